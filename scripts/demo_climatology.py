"""Rule demo_climatology: synthetic quintile files, served in the quest's layout (demo only)."""

from ensflow.entry import job
from ensflow.stages import quest_stage

with job(snakemake) as settings:
    quest_stage.synthetic_climatology(settings, snakemake.input.published,
                                      list(snakemake.output.files))
