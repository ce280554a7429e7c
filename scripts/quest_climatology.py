"""Rule quest_climatology: the demo's synthetic weekly quintile thresholds."""

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

with logs.step("quest_climatology", snakemake.log[0]):
    quest_stage.synthetic_climatology(settings_from(snakemake.config), snakemake.input.published,
                                      snakemake.output.climatology)
