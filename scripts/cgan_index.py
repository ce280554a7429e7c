"""Rule cgan_index: one step's .index → the byte ranges the cycle needs."""

from ensflow.entry import job
from ensflow.stages.cgan import select_step

step = int(snakemake.wildcards.step)
with job(snakemake) as settings:
    select_step(settings, step, snakemake.output.index)
