"""Rule cgan_setup: run branch of the archive store, arrays grown for the cycle."""

from ensflow.entry import job
from ensflow.stages import cgan

with job(snakemake) as settings:
    cgan.setup(settings, snakemake.input.index[0], snakemake.output.record)
