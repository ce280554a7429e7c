"""Rule quest_upload_prepare: submission ready and credentials present (never printed)."""

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

with logs.step("quest_upload_prepare", snakemake.log[0]):
    quest_stage.prepare_upload(settings_from(snakemake.config), list(snakemake.input.files),
                               snakemake.output.ready)
