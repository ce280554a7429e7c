"""Rule quest_publish: one commit with the whole ensemble, or as the config allows."""

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

with logs.step("quest_publish", snakemake.log[0]):
    quest_stage.publish(settings_from(snakemake.config), snakemake.input.setup,
                        list(snakemake.input.forks), snakemake.output.record)
