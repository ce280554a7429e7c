"""Rule demo_climatology: synthetic quintile files, served in the quest's layout (demo only)."""

from ensflow import quest_stage
from ensflow.entry import job

with job(snakemake) as settings:
    quest_stage.synthetic_climatology(settings, snakemake.input.published,
                                      list(snakemake.output.files))
