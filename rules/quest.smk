# AI Weather Quest: 1.5° member fields -> aifs_ens_1p5 store -> weekly quintiles -> submission.


rule quest_member_fields:
    input:
        receipt=UPLOAD_RECEIPT,
    output:
        fields=f"{QUEST_DIR}/members/member_{{member}}.bucket.npz",
    log:
        "logs/{cycle}/quest_member_fields/member_{member}.log",
    benchmark:
        "benchmarks/{cycle}/quest_member_fields/member_{member}.tsv"
    retries: 2
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quest_member_fields.py"


rule quest_setup:
    input:
        preflight=PREFLIGHT.replace("{stage}", "aifs"),
    output:
        record=QUEST_SETUP,
    log:
        "logs/{cycle}/quest_setup.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quest_setup.py"


rule quest_member:
    input:
        fields=QUEST_FIELDS,
        setup=QUEST_SETUP,
    output:
        fork=QUEST_FORK,
    log:
        "logs/{cycle}/quest_member/member_{member}.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quest_member.py"


rule quest_publish:
    input:
        setup=QUEST_SETUP,
        forks=expand(QUEST_FORK, cycle="{cycle}", member=MEMBERS),
    output:
        record=QUEST_PUBLISHED,
    log:
        "logs/{cycle}/quest_publish.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quest_publish.py"


rule demo_climatology:
    input:
        published=QUEST_PUBLISHED.replace("{cycle}", CYCLE),
    output:
        files=DEMO_CLIMATOLOGY,
    log:
        f"logs/{CYCLE}/demo_climatology.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/demo_climatology.py"


rule quest_climatology:
    input:
        served=DEMO_CLIMATOLOGY if config["synthetic"] else [],
        preflight=PREFLIGHT.replace("{stage}", "aifs"),
    output:
        files=QUEST_CLIMATOLOGY_FILES,
        record=f"{QUEST_DIR}/climatology.json",
    log:
        "logs/{cycle}/quest_climatology.log",
    retries: 2
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quest_climatology.py"


rule quest_products:
    input:
        published=QUEST_PUBLISHED,
        climatology=QUEST_CLIMATOLOGY_FILES,
    output:
        files=QUEST_FILES,
        report=f"{QUEST_DIR}/sanity.json",
    log:
        "logs/{cycle}/quest_products.log",
    benchmark:
        "benchmarks/{cycle}/quest_products.tsv"
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quest_products.py"


rule quest_maps:
    input:
        files=rules.quest_products.output.files,
    output:
        maps=QUEST_PLOTS,
    log:
        "logs/{cycle}/quest_maps.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quest_maps.py"


rule quest_upload_prepare:
    input:
        files=rules.quest_products.output.files,
        report=rules.quest_products.output.report,
    output:
        ready=f"{QUEST_DIR}/upload_ready.json",
    log:
        "logs/{cycle}/quest_upload_prepare.log",
    conda:
        "../envs/cpu.yaml"
    script:
        "../scripts/quest_upload_prepare.py"


rule quest:
    input:
        expand(QUEST_FILES, cycle=CYCLE),
        expand(QUEST_PLOTS, cycle=CYCLE),
