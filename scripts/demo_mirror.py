"""Rule demo_mirror: a synthetic open-data mirror with ECMWF's layout and .index files."""

from ensflow import logs
from ensflow.demo import make_mirror
from ensflow.entry import settings_from

with logs.step("demo_mirror", snakemake.log[0]):
    make_mirror(settings_from(snakemake.config), snakemake.input.checkpoint,
                snakemake.output.record)
