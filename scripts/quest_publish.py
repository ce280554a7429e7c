"""Rule quest_publish: one commit with the whole ensemble, or as the config allows."""

from ensflow import quest_stage
from ensflow.entry import job

with job(snakemake) as settings:
    quest_stage.publish(settings, snakemake.input.setup,
                        list(snakemake.input.forks), snakemake.output.record)
