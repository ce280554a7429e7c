"""Rule cgan_publish: merge the forks, one commit, move main atomically, tag the cycle."""

from ensflow.entry import job
from ensflow.stages import cgan

with job(snakemake) as settings:
    cgan.publish(settings, snakemake.input.setup,
                 list(snakemake.input.forks), snakemake.output.record)
