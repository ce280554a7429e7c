"""Rule checkpoint_record: the checkpoint's sha256 for provenance."""

from ensflow.adapters.checkpoint_info import write_record
from ensflow.entry import job

with job(snakemake) as settings:
    write_record(settings.checkpoint, snakemake.output.record)
