# Per-member input states: open data -> bucket (prepare), bucket -> scratch (fetch).


rule prepare_input:
    input:
        unpack(demo_inputs),
        unpack(preflight_gate("aifs")),
    output:
        receipt=INPUT_RECEIPT,
    log:
        "logs/{cycle}/prepare_input/member_{member}.log",
        record="logs/{cycle}/prepare_input/member_{member}.json",
    benchmark:
        "benchmarks/{cycle}/prepare_input/member_{member}.tsv"
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
        pkl=temp(f"{MEMBER_DIR}/input_state_member_{{member}}.pkl"),
    log:
        "logs/{cycle}/fetch_input/member_{member}.log",
        record="logs/{cycle}/fetch_input/member_{member}.json",
    benchmark:
        "benchmarks/{cycle}/fetch_input/member_{member}.tsv"
    priority: 10
    retries: 2
    conda:
        "../envs/gpu.yaml"
    params:
        settings=settings_for("fetch_input"),
    script:
        "../scripts/fetch_input.py"
