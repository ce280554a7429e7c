# The embedded demo: synthetic open data and a tiny checkpoint, no network.


rule demo_checkpoint:
    output:
        checkpoint=config["checkpoint"],
    log:
        "logs/demo_checkpoint.log",
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/demo_checkpoint.py"


rule demo_mirror:
    input:
        checkpoint=config["checkpoint"],
    output:
        record=DEMO_MIRROR_RECORD,
    log:
        "logs/{cycle}/demo_mirror.log",
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/demo_mirror.py"
