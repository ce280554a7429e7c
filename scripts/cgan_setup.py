"""Rule cgan_setup: every step's .index → byte ranges; then the run branch of the archive
store, arrays grown for the cycle."""

from ensflow.entry import job
from ensflow.stages import cgan

with job(snakemake) as settings:
    cgan.setup(settings, list(snakemake.output.indices), snakemake.output.record)
