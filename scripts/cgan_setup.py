"""Rule cgan_setup: run branch of the archive store, arrays grown for the cycle."""

from ensflow import cgan, logs
from ensflow.entry import settings_from

with logs.step("cgan_setup", snakemake.log[0]):
    cgan.setup(settings_from(snakemake.config), snakemake.input.index[0], snakemake.output.record)
