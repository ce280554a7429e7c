"""Rule demo_climatology: synthetic quintile files, served in the quest's layout (demo only)."""

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

with logs.step("demo_climatology", snakemake.log[0]):
    quest_stage.synthetic_climatology(settings_from(snakemake.config), snakemake.input.published,
                                      list(snakemake.output.files))
