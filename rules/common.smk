# Names shared by every stage: paths, wildcards, helpers.
from ensflow.stages.cgan import netcdf_name, plan_from
from ensflow.cycle import member_id
from ensflow.layout import forecast_windows, join_url, window_tag
from ensflow.stages.quest_stage import climatology_files, climatology_paths

CYCLE = SETTINGS.cycle
MEMBERS = [member_id(m) for m in SETTINGS.members]
RESULTS = config["results"]
SCRATCH = config["scratch"]
WINDOWS = [
    window_tag(a, b)
    for a, b in forecast_windows(
        config["forecast"]["lead_time"], config["forecast"]["hours_per_file"]
    )
]

MEMBER_DIR = f"{SCRATCH}/{{cycle}}/member_{{member}}"
INPUT_RECEIPT = f"{RESULTS}/{{cycle}}/receipts/input_member_{{member}}.json"
UPLOAD_RECEIPT = f"{RESULTS}/{{cycle}}/receipts/forecast_member_{{member}}.json"
FORECAST_GRIBS = [
    f"{MEMBER_DIR}/aifs_ens_forecast_{{cycle}}_member{{member}}_{w}.grib"
    for w in WINDOWS
]
CHECKPOINT_RECORD = f"{RESULTS}/{{cycle}}/checkpoint.json"
DEMO_MIRROR_RECORD = f"{RESULTS}/{{cycle}}/demo_mirror.json"
PREFLIGHT = f"{RESULTS}/{{cycle}}/preflight_{{stage}}.json"


def settings_for(rule):
    """What the rule's job uses, as its params (ensflow.config.JOB_SETTINGS)."""
    return job_params(SETTINGS.config, rule)


wildcard_constraints:
    cycle=r"\d{8}_\d{4}",
    member=r"\d{3}",
    stage=r"aifs|cgan",


def preflight_gate(stage):
    """The stage's first jobs wait for its preflight until it has passed once. After that
    the preflight is no input of theirs (the `all` target re-runs it when its params
    change): Snakemake would otherwise treat everything below a re-run preflight as
    updated, and an `ancient()` input hides the stage's own params changes."""

    def inputs(wildcards):
        path = PREFLIGHT.format(cycle=wildcards.cycle, stage=stage)
        return {} if Path(path).exists() else {"preflight": path}

    return inputs


def demo_inputs(wildcards):
    """In the demo the checkpoint and open-data mirror are made by rules."""
    if not config["synthetic"]:
        return {}
    return {
        "checkpoint": config["checkpoint"],
        "mirror": DEMO_MIRROR_RECORD.format(cycle=wildcards.cycle),
    }


# cGAN stage
CGAN_PLAN = plan_from(SETTINGS)
CGAN_STEPS = [f"{s:03d}" for s in CGAN_PLAN.all_steps]
CGAN_BATCHES = [f"{b:02d}" for b in range(len(CGAN_PLAN.batches()))]
CGAN_DIR = f"{RESULTS}/{{cycle}}/cgan"
CGAN_INDEX = f"{CGAN_DIR}/index/step_{{step}}.json"
CGAN_SETUP = f"{CGAN_DIR}/setup.json"
CGAN_FORK = f"{CGAN_DIR}/forks/batch_{{batch}}.fork"
CGAN_PUBLISHED = f"{CGAN_DIR}/published.json"
CGAN_NETCDF = f"{CGAN_DIR}/{netcdf_name(CYCLE)}"


wildcard_constraints:
    step=r"\d{3}",
    batch=r"\d{2}",


def cgan_indices(wildcards):
    return expand(CGAN_INDEX, cycle=wildcards.cycle, step=CGAN_STEPS)


# AI Weather Quest stage
QUEST_ON = config["quest"]["enabled"]
QUEST_DIR = f"{RESULTS}/{{cycle}}/quest"
QUEST_FIELDS = f"{QUEST_DIR}/members/member_{{member}}.{config['quest']['source']}.npz"
QUEST_SETUP = f"{QUEST_DIR}/setup.json"
QUEST_FORK = f"{QUEST_DIR}/forks/member_{{member}}.fork"
QUEST_PUBLISHED = f"{QUEST_DIR}/published.json"
QUEST_CLIMATOLOGY_DIR = f"{QUEST_DIR}/climatology"
QUEST_CLIMATOLOGY_FILES = [
    f"{QUEST_CLIMATOLOGY_DIR}/{p.name}" for p in climatology_files(SETTINGS, ".")
]
# The demo serves the quest's layout locally (file:// prefix); a rule writes it there.
DEMO_CLIMATOLOGY = [
    join_url(config["quest"]["climatology"] or "file://demo/aiwq", path).removeprefix(
        "file://"
    )
    for path in climatology_paths(SETTINGS)
]
QUEST_SUBMISSION_DIR = f"{QUEST_DIR}/submission"
QUEST_FILES = [
    f"{QUEST_SUBMISSION_DIR}/{v}_{CYCLE[:8]}_p{p}_{config['quest']['team']}_{config['quest']['model']}.nc"
    for v in config["quest"]["variables"]
    for p in (1, 2)
]
QUEST_PLOTS = [
    f"{QUEST_DIR}/maps/{v}_p{p}.png"
    for v in config["quest"]["variables"]
    for p in (1, 2)
]
FORECAST_OUTPUTS = {"gribs": temp(FORECAST_GRIBS)}
if QUEST_ON and config["quest"]["source"] == "forecast":
    FORECAST_OUTPUTS["quest"] = QUEST_FIELDS


# Run hooks (Snakefile): the active-cycle marker and the run report.
from ensflow.ops.report import write_run_report
from ensflow.ops import runlock

# The main process (not jobs, not pods) claims the directory's run lock while parsing:
# held for the process's life, dropped by the kernel if it dies, so a crashed run leaves
# nothing that stops the same command (runlock.py says why Snakemake's lock is not enough).
if workflow.is_main_process:
    RUN_LOCK = runlock.claim(Path.cwd(), CYCLE)
    if not RUN_LOCK.held:
        print(
            f"ensflow: {runlock.refusal(Path.cwd(), RUN_LOCK.holder)}", file=sys.stderr
        )

STORAGE_PREFIX = (
    workflow.storage_settings.default_storage_prefix
    if workflow.storage_settings.default_storage_provider
    else None
)


def finish_run():
    """End of a real run, finished or failed: write the report (on a cluster from the
    jobs' files under the storage prefix). A refused run reports nothing."""
    if not RUN_LOCK.held:
        return
    written = write_run_report(SETTINGS, Path.cwd(), STORAGE_PREFIX)
    if written:
        print(f"ensflow: run report {written}", file=sys.stderr)
