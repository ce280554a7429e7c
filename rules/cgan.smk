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
        preflight=PREFLIGHT.replace("{stage}", "cgan"),
    output:
        index=CGAN_INDEX,
    log:
        "logs/{cycle}/cgan_index/step_{step}.log",
    retries: 2
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/cgan_index.py"


rule cgan_setup:
    input:
        index=expand(CGAN_INDEX, cycle="{cycle}", step=CGAN_STEPS[0]),
    output:
        record=CGAN_SETUP,
    log:
        "logs/{cycle}/cgan_setup.log",
    conda:
        "../envs/cpu.yaml"
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
    benchmark:
        "benchmarks/{cycle}/cgan_batch/batch_{batch}.tsv"
    retries: 1
    conda:
        "../envs/cpu.yaml"
    threads: config["cgan"]["decode_workers"]
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
    conda:
        "../envs/cpu.yaml"
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
    benchmark:
        "benchmarks/{cycle}/cgan_netcdf.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/cgan_netcdf.py"


rule cgan:
    input:
        expand(CGAN_NETCDF, cycle=CYCLE),
