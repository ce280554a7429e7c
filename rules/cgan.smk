# IFS-ENS cGAN inputs: index -> batches (forks) -> one atomic publish -> NetCDF.


rule cgan_index:
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
        index=CGAN_INDEX,
    log:
        "logs/{cycle}/cgan_index/step_{step}.log",
        record="logs/{cycle}/cgan_index/step_{step}.json",
    retries: 2
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("cgan_index"),
    script:
        "../scripts/cgan_index.py"


rule cgan_setup:
    input:
        index=expand(CGAN_INDEX, cycle="{cycle}", step=CGAN_STEPS[0]),
    output:
        record=CGAN_SETUP,
    log:
        "logs/{cycle}/cgan_setup.log",
        record="logs/{cycle}/cgan_setup.json",
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
    log:
        "logs/{cycle}/cgan_batch/batch_{batch}.log",
        record="logs/{cycle}/cgan_batch/batch_{batch}.json",
    benchmark:
        "benchmarks/{cycle}/cgan_batch/batch_{batch}.tsv"
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
        "logs/{cycle}/cgan_publish.log",
        record="logs/{cycle}/cgan_publish.json",
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
    output:
        netcdf=CGAN_NETCDF,
    log:
        "logs/{cycle}/cgan_netcdf.log",
        record="logs/{cycle}/cgan_netcdf.json",
    benchmark:
        "benchmarks/{cycle}/cgan_netcdf.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("cgan_netcdf"),
    script:
        "../scripts/cgan_netcdf.py"


rule cgan:
    input:
        expand(CGAN_NETCDF, cycle=CYCLE),
