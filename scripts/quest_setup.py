"""Rule quest_setup: run branch of the aifs_ens_1p5 store, arrays grown for the cycle."""

from ensflow import quest_stage
from ensflow.entry import job

with job(snakemake) as settings:
    quest_stage.setup(settings, snakemake.output.record)
