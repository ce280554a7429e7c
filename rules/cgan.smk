# IFS-ENS cGAN inputs: index + store setup -> batches (forks) -> one atomic publish -> NetCDF.


# One job: every batch needs every step's index and the store set up, and a step's index is
# one small GET. The storage clients retry transient errors; a job retry would only repeat
# a permanent one (a server that ignores byte ranges, a message missing from an index).
rule cgan_setup:
    input:
        unpack(
            lambda wc: (
                {"mirror": DEMO_MIRROR_RECORD.format(cycle=wc.cycle)}
                if config["synthetic"]
                else {}
            )
        ),
        unpack(preflight_gate("cgan")),
    output:
        indices=expand(CGAN_INDEX, cycle="{cycle}", step=CGAN_STEPS),
        record=CGAN_SETUP,
    log:
        **job_log("cgan_setup"),
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("cgan_setup"),
    script:
        "../scripts/cgan_setup.py"


rule cgan_batch:
    input:
        indices=cgan_indices,
        setup=CGAN_SETUP,
    output:
        fork=CGAN_FORK,
        sums=CGAN_SUMS,
    log:
        **job_log("cgan_batch", "batch"),
    benchmark:
        job_benchmark("cgan_batch", "batch")
    retries: 1
    conda:
        "../envs/cpu.yaml"
    threads: config["cgan"]["decode_workers"]
    params:
        settings=settings_for("cgan_batch"),
    script:
        "../scripts/cgan_batch.py"


rule cgan_publish:
    input:
        setup=CGAN_SETUP,
        forks=expand(CGAN_FORK, cycle="{cycle}", batch=CGAN_BATCHES),
    output:
        record=CGAN_PUBLISHED,
    log:
        **job_log("cgan_publish"),
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("cgan_publish"),
    script:
        "../scripts/cgan_publish.py"


rule cgan_netcdf:
    input:
        published=CGAN_PUBLISHED,
        indices=cgan_indices,
        sums=expand(CGAN_SUMS, cycle="{cycle}", batch=CGAN_BATCHES),
    output:
        netcdf=report(
            CGAN_NETCDF, caption="../report/cgan_netcdf.rst", category="cGAN inputs"
        ),
    log:
        **job_log("cgan_netcdf"),
    benchmark:
        job_benchmark("cgan_netcdf")
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("cgan_netcdf"),
    script:
        "../scripts/cgan_netcdf.py"


rule cgan:
    input:
        expand(CGAN_NETCDF, cycle=CYCLE),
