"""Rule preflight: fail fast, one line per missing precondition, before any download."""

from ensflow import logs, preflight
from ensflow.entry import settings_from

stage = snakemake.wildcards.stage
with logs.step(f"preflight {stage}", snakemake.log[0]):
    preflight.run(settings_from(snakemake.config), stage, snakemake.output.record)
