"""Rule demo_checkpoint: the tiny demo model as a real anemoi checkpoint."""

from ensflow.demo.world import make_checkpoint
from ensflow.entry import job

with job(snakemake) as settings:
    make_checkpoint(settings, snakemake.output.checkpoint)
