"""Rule demo_mirror: a synthetic open-data mirror with ECMWF's layout and .index files."""

from ensflow.demo.world import make_mirror
from ensflow.entry import job

with job(snakemake) as settings:
    make_mirror(settings, snakemake.input.checkpoint,
                snakemake.output.record)
