"""Rule quest_climatology: the quest's weekly quintile files for this cycle's weeks, checked."""

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

with logs.step("quest_climatology", snakemake.log[0]):
    quest_stage.fetch_climatology(settings_from(snakemake.config), list(snakemake.output.files),
                                  snakemake.output.record)
