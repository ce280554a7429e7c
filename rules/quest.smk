# AI Weather Quest: 1.5° member fields -> aifs_ens_1p5 store -> weekly quintiles -> submission.


rule quest_member_fields:
    input:
        receipt=UPLOAD_RECEIPT,
    output:
        fields=LAYOUT.quest_fields("bucket"),
    log:
        **job_log("quest_member_fields", "member"),
    benchmark:
        job_benchmark("quest_member_fields", "member")
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
        **job_log("quest_setup"),
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
        **job_log("quest_member", "member"),
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
        **job_log("quest_publish"),
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
        **job_log("demo_climatology", cycle=CYCLE),
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
        record=LAYOUT.quest_climatology_record(),
    log:
        **job_log("quest_climatology"),
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
        files=report(
            QUEST_FILES,
            caption="../report/quest_submission.rst",
            category="AI Weather Quest",
            subcategory="submission",
        ),
        anomalies=LAYOUT.quest_anomalies(),
        report=report(
            LAYOUT.quest_sanity(),
            caption="../report/quest_sanity.rst",
            category="AI Weather Quest",
            subcategory="checks",
        ),
    log:
        **job_log("quest_products"),
    benchmark:
        job_benchmark("quest_products")
    conda:
        "../envs/cpu.yaml"
    params:
        settings=settings_for("quest_products"),
    script:
        "../scripts/quest_products.py"


rule quest_maps:
    input:
        files=rules.quest_products.output.files,
        anomalies=rules.quest_products.output.anomalies,
    output:
        maps=report(
            QUEST_PLOTS,
            caption="../report/quest_maps.rst",
            category="AI Weather Quest",
            subcategory="maps",
        ),
    log:
        **job_log("quest_maps"),
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
        ready=LAYOUT.quest_upload_ready(),
    log:
        **job_log("quest_upload_prepare"),
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
