# The embedded demo: synthetic open data and a tiny checkpoint, no network.


rule demo_checkpoint:
    output:
        checkpoint=config["checkpoint"],
    log:
        **job_log("demo_checkpoint", cycle=None),
    conda:
        "../envs/gpu.yaml"
    params:
        settings=settings_for("demo_checkpoint"),
        # The class the checkpoint names: when the code moves it, the checkpoint is remade.
        model_class=DEMO_MODEL_CLASS,
    script:
        "../scripts/demo_checkpoint.py"


rule demo_mirror:
    input:
        checkpoint=config["checkpoint"],
    output:
        record=DEMO_MIRROR_RECORD,
    log:
        **job_log("demo_mirror"),
    conda:
        "../envs/gpu.yaml"
    params:
        settings=settings_for("demo_mirror"),
    script:
        "../scripts/demo_mirror.py"
