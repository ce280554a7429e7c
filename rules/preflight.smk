# Preflight: everything an expensive run needs, checked before the first download.


rule preflight:
    input:
        unpack(demo_inputs),
    output:
        record=PREFLIGHT,
    log:
        **job_log("preflight", "stage"),
    conda:
        "../envs/gpu.yaml"
    params:
        settings=lambda wc: settings_for(f"preflight_{wc.stage}"),
    script:
        "../scripts/preflight.py"
