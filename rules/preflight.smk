# Preflight: everything an expensive run needs, checked before the first download.


rule preflight:
    input:
        unpack(demo_inputs),
    output:
        record=PREFLIGHT,
    log:
        "logs/{cycle}/preflight_{stage}.log",
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/preflight.py"
