"""Rule quest_climatology: the quest's weekly quintile files for this cycle's weeks, checked."""

from ensflow.entry import job
from ensflow.stages import quest_stage

with job(snakemake) as settings:
    quest_stage.fetch_climatology(settings, list(snakemake.output.files),
                                  snakemake.output.record)
