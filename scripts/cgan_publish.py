"""Rule cgan_publish: merge the forks, one commit, move main atomically, tag the cycle."""

from ensflow import cgan, logs
from ensflow.entry import settings_from

with logs.step("cgan_publish", snakemake.log[0]):
    cgan.publish(settings_from(snakemake.config), snakemake.input.setup,
                 list(snakemake.input.forks), snakemake.output.record)
