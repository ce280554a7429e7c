"""Rule demo_checkpoint: the tiny demo model as a real anemoi checkpoint."""

from ensflow import logs
from ensflow.demo import make_checkpoint
from ensflow.entry import settings_from

with logs.step("demo_checkpoint", snakemake.log[0]):
    make_checkpoint(settings_from(snakemake.config), snakemake.output.checkpoint)
