# Per-member input states: open data -> bucket (prepare), bucket -> scratch (fetch).


rule prepare_input:
    input:
        unpack(demo_inputs),
        unpack(preflight_gate("aifs")),
    output:
        receipt=INPUT_RECEIPT,
    log:
        **job_log("prepare_input", "member"),
    benchmark:
        job_benchmark("prepare_input", "member")
    priority: 5
    retries: 2
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("prepare_input"),
    script:
        "../scripts/prepare_input.py"


rule fetch_input:
    input:
        receipt=INPUT_RECEIPT,
    output:
        pkl=temp(LAYOUT.input_state()),
    log:
        **job_log("fetch_input", "member"),
    benchmark:
        job_benchmark("fetch_input", "member")
    priority: 10
    retries: 2
    conda:
        "../envs/gpu.yaml"
    params:
        settings=settings_for("fetch_input"),
    script:
        "../scripts/fetch_input.py"
