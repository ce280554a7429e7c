# Names shared by every stage: the layout's patterns (ensflow.layout), wildcards, helpers.
from ensflow.adapters.checkpoint_info import DEMO_MODEL_CLASS
from ensflow.cycle import member_id
from ensflow.layout import Layout, forecast_windows, served_climatology
from ensflow.science.cgan_plan import plan_from
from ensflow.science.quest import products as quest_products
from ensflow.stages.quest_stage import (
    climatology_names,
    climatology_paths,
    submission_names,
)

LAYOUT = Layout.of(SETTINGS)
CYCLE = SETTINGS.cycle
MEMBERS = [member_id(m) for m in SETTINGS.members]
WINDOWS = forecast_windows(
    config["forecast"]["lead_time"], config["forecast"]["hours_per_file"]
)

INPUT_RECEIPT = LAYOUT.input_receipt()
UPLOAD_RECEIPT = LAYOUT.upload_receipt()
FORECAST_GRIBS = LAYOUT.forecast_gribs(WINDOWS)
CHECKPOINT_RECORD = LAYOUT.checkpoint_record()
DEMO_MIRROR_RECORD = LAYOUT.demo_mirror_record()
PREFLIGHT = LAYOUT.preflight()
job_log = LAYOUT.job_log
job_benchmark = LAYOUT.job_benchmark


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
CGAN_INDEX = LAYOUT.cgan_index()
CGAN_SETUP = LAYOUT.cgan_setup()
CGAN_FORK = LAYOUT.cgan_fork()
CGAN_SUMS = LAYOUT.cgan_sums()
CGAN_PUBLISHED = LAYOUT.cgan_published()
CGAN_NETCDF = LAYOUT.cgan_netcdf(CYCLE)


wildcard_constraints:
    step=r"\d{3}",
    batch=r"\d{2}",


def cgan_indices(wildcards):
    return expand(CGAN_INDEX, cycle=wildcards.cycle, step=CGAN_STEPS)


# AI Weather Quest stage
QUEST_ON = config["quest"]["enabled"]
QUEST_FIELDS = LAYOUT.quest_fields(config["quest"]["source"])
QUEST_SETUP = LAYOUT.quest_setup()
QUEST_FORK = LAYOUT.quest_fork()
QUEST_PUBLISHED = LAYOUT.quest_published()
QUEST_CLIMATOLOGY_FILES = LAYOUT.quest_climatology(climatology_names(SETTINGS))
# The demo serves the quest's layout locally (file:// prefix); a rule writes it there.
DEMO_CLIMATOLOGY = served_climatology(
    config["quest"]["climatology"], climatology_paths(SETTINGS)
)
QUEST_PRODUCTS = quest_products(config["quest"]["variables"])
QUEST_FILES = LAYOUT.quest_submissions(submission_names(SETTINGS))
QUEST_PLOTS = LAYOUT.quest_maps(QUEST_PRODUCTS)
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
