"""Rule preflight: fail fast, one line per missing precondition, before any download."""

from ensflow.entry import job
from ensflow.stages import preflight

stage = snakemake.wildcards.stage
with job(snakemake) as settings:
    preflight.run(settings, stage, snakemake.output.record)
