"""Rule quest_upload_prepare: submission ready and credentials present (never printed)."""

from ensflow.entry import job
from ensflow.stages import quest_stage

with job(snakemake) as settings:
    quest_stage.prepare_upload(settings, list(snakemake.input.files),
                               snakemake.output.ready)
