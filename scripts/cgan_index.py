"""Rule cgan_index: one step's .index → the byte ranges the cycle needs."""

from ensflow.cgan import plan_from, select_step
from ensflow.entry import job

step = int(snakemake.wildcards.step)
with job(snakemake) as settings:
    select_step(plan_from(settings), step, snakemake.output.index)
