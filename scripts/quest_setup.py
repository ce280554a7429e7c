"""Rule quest_setup: run branch of the aifs_ens_1p5 store, arrays grown for the cycle."""

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

with logs.step("quest_setup", snakemake.log[0]):
    quest_stage.setup(settings_from(snakemake.config), snakemake.output.record)
