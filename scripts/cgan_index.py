"""Rule cgan_index: one step's .index → the byte ranges the cycle needs."""

from ensflow import logs
from ensflow.cgan import plan_from, select_step
from ensflow.entry import settings_from

step = int(snakemake.wildcards.step)
with logs.step(f"cgan_index step {step}", snakemake.log[0]):
    select_step(plan_from(settings_from(snakemake.config)), step, snakemake.output.index)
