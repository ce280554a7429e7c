# AI Weather Quest: 1.5° member fields -> aifs_ens_1p5 store -> weekly quintiles -> submission.


rule quest_member_fields:
    input:
        receipt=UPLOAD_RECEIPT,
    output:
        fields=f"{QUEST_DIR}/members/member_{{member}}.bucket.npz",
    log:
        "logs/{cycle}/quest_member_fields/member_{member}.log",
        record="logs/{cycle}/quest_member_fields/member_{member}.json",
    benchmark:
        "benchmarks/{cycle}/quest_member_fields/member_{member}.tsv"
    retries: 2
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("quest_member_fields"),
    script:
        "../scripts/quest_member_fields.py"


rule quest_setup:
    input:
        unpack(preflight_gate("aifs")),
    output:
        record=QUEST_SETUP,
    log:
        "logs/{cycle}/quest_setup.log",
        record="logs/{cycle}/quest_setup.json",
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("quest_setup"),
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
        record="logs/{cycle}/quest_member/member_{member}.json",
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("quest_member"),
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
        record="logs/{cycle}/quest_publish.json",
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("quest_publish"),
    script:
        "../scripts/quest_publish.py"


rule demo_climatology:
    input:
        published=QUEST_PUBLISHED.replace("{cycle}", CYCLE),
    output:
        files=DEMO_CLIMATOLOGY,
    log:
        f"logs/{CYCLE}/demo_climatology.log",
        record=f"logs/{CYCLE}/demo_climatology.json",
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("demo_climatology"),
    script:
        "../scripts/demo_climatology.py"


rule quest_climatology:
    input:
        unpack(preflight_gate("aifs")),
        served=DEMO_CLIMATOLOGY if config["synthetic"] else [],
    output:
        files=QUEST_CLIMATOLOGY_FILES,
        record=f"{QUEST_DIR}/climatology.json",
    log:
        "logs/{cycle}/quest_climatology.log",
        record="logs/{cycle}/quest_climatology.json",
    retries: 2
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("quest_climatology"),
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
        record="logs/{cycle}/quest_products.json",
    benchmark:
        "benchmarks/{cycle}/quest_products.tsv"
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("quest_products"),
    script:
        "../scripts/quest_products.py"


rule quest_maps:
    input:
        files=rules.quest_products.output.files,
    output:
        maps=QUEST_PLOTS,
    log:
        "logs/{cycle}/quest_maps.log",
        record="logs/{cycle}/quest_maps.json",
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("quest_maps"),
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
        record="logs/{cycle}/quest_upload_prepare.json",
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("quest_upload_prepare"),
    script:
        "../scripts/quest_upload_prepare.py"


rule quest:
    input:
        expand(QUEST_FILES, cycle=CYCLE),
        expand(QUEST_PLOTS, cycle=CYCLE),
