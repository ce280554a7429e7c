# ensflow: one ensemble forecast cycle, from ECMWF open data to products.
# Targets and config validation live here; each stage is one file in rules/.
import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from ensflow.config import validate
from ensflow.errors import ConfigError


configfile: "config/config.yaml"


try:
    SETTINGS = validate(config)
except ConfigError as exc:
    raise SystemExit(f"ensflow: {exc}")

config.update(SETTINGS.raw)


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
        rules.aifs.input,
        rules.cgan.input if config["cgan"]["enabled"] else [],
        rules.quest.input if config["quest"]["enabled"] else [],


# Hooks run in the main Snakemake process only, never in a dry-run. The marker tells
# `ensflow purge` that this cycle is in use; the report is written after every run,
# finished or failed (on a cluster, from the jobs' files under the storage prefix).
from ensflow.report import write_run_report
from ensflow.runlock import clear_active, mark_active

STORAGE_PREFIX = (
    workflow.storage_settings.default_storage_prefix
    if workflow.storage_settings.default_storage_provider
    else None
)


onstart:
    mark_active(Path.cwd(), CYCLE)


def finish_run():
    clear_active(Path.cwd(), CYCLE)
    written = write_run_report(SETTINGS, Path.cwd(), STORAGE_PREFIX)
    if written:
        print(f"ensflow: run report {written}", file=sys.stderr)


onsuccess:
    finish_run()


onerror:
    finish_run()
