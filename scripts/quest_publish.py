"""Rule quest_publish: one commit with the whole ensemble, or as the config allows."""

from ensflow.entry import job
from ensflow.stages import quest_stage

with job(snakemake) as settings:
    quest_stage.publish(settings, snakemake.input.setup,
                        list(snakemake.input.forks), snakemake.output.record)
