# AIFS-ENS inference per member, GRIB windows, upload with receipts.


rule checkpoint_record:
    input:
        unpack(
            lambda wc: (
                {"checkpoint": config["checkpoint"]} if config["synthetic"] else {}
            )
        ),
    output:
        record=CHECKPOINT_RECORD,
    log:
        **job_log("checkpoint_record"),
    conda:
        "../envs/gpu.yaml"
    params:
        settings=settings_for("checkpoint_record"),
    script:
        "../scripts/checkpoint_record.py"


rule forecast:
    input:
        pkl=rules.fetch_input.output.pkl,
    output:
        **FORECAST_OUTPUTS,
    log:
        **job_log("forecast", "member"),
    benchmark:
        job_benchmark("forecast", "member")
    priority: 20
    conda:
        "../envs/gpu.yaml"
    resources:
        gpu=1,
    params:
        settings=settings_for("forecast"),
    script:
        "../scripts/forecast.py"


rule upload:
    input:
        gribs=rules.forecast.output.gribs,
        input_receipt=INPUT_RECEIPT,
        checkpoint_record=CHECKPOINT_RECORD,
    output:
        receipt=UPLOAD_RECEIPT,
    log:
        **job_log("upload", "member"),
    benchmark:
        job_benchmark("upload", "member")
    priority: 30
    retries: 2
    conda:
        "../envs/gpu.yaml"
    params:
        settings=settings_for("upload"),
    script:
        "../scripts/upload.py"
