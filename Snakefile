# ensflow: one ensemble forecast cycle, from ECMWF open data to products.
# Targets and config validation live here; each stage is one file in rules/.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from ensflow.config import job_params, validate
from ensflow.errors import ConfigError


configfile: "config/config.yaml"


report: "report/workflow.rst"


try:
    SETTINGS = validate(config)
except ConfigError as exc:
    raise SystemExit(f"ensflow: {exc}")

config.update(SETTINGS.config)


include: "rules/common.smk"
include: "rules/demo.smk"
include: "rules/preflight.smk"
include: "rules/inputs.smk"
include: "rules/forecast.smk"
include: "rules/cgan.smk"
include: "rules/quest.smk"


rule aifs:
    input:
        expand(UPLOAD_RECEIPT, cycle=CYCLE, member=MEMBERS),


rule all:
    default_target: True
    input:
        expand(
            PREFLIGHT,
            cycle=CYCLE,
            stage=["aifs"] + (["cgan"] if config["cgan"]["enabled"] else []),
        ),
        rules.aifs.input,
        rules.cgan.input if config["cgan"]["enabled"] else [],
        rules.quest.input if config["quest"]["enabled"] else [],


# Hooks run in the main Snakemake process only, never in a dry-run. A run executes only
# while it holds the directory's run lock (rules/common.smk); the report is written after
# every run, finished or failed (see finish_run in rules/common.smk).
onstart:
    RUN_LOCK.require()


onsuccess:
    finish_run()


onerror:
    finish_run()
