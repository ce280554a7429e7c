"""Rule quest_setup: run branch of the aifs_ens_1p5 store, arrays grown for the cycle."""

from ensflow.entry import job
from ensflow.stages import quest_stage

with job(snakemake) as settings:
    quest_stage.setup(settings, snakemake.output.record)
