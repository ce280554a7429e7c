# Per-member input states: open data -> bucket (prepare), bucket -> scratch (fetch).


rule prepare_input:
    input:
        unpack(demo_inputs),
        preflight=PREFLIGHT.replace("{stage}", "aifs"),
    output:
        receipt=INPUT_RECEIPT,
    log:
        "logs/{cycle}/prepare_input/member_{member}.log",
    benchmark:
        "benchmarks/{cycle}/prepare_input/member_{member}.tsv"
    priority: 5
    retries: 2
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/prepare_input.py"


rule fetch_input:
    input:
        receipt=INPUT_RECEIPT,
    output:
        pkl=temp(f"{MEMBER_DIR}/input_state_member_{{member}}.pkl"),
    log:
        "logs/{cycle}/fetch_input/member_{member}.log",
    benchmark:
        "benchmarks/{cycle}/fetch_input/member_{member}.tsv"
    priority: 10
    retries: 2
    conda:
        "../envs/gpu.yaml"
    script:
        "../scripts/fetch_input.py"
