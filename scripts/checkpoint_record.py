"""Rule checkpoint_record: the checkpoint's sha256 for provenance."""

from ensflow import logs
from ensflow.checkpoint_info import write_record
from ensflow.entry import settings_from

with logs.step("checkpoint_record", snakemake.log[0]):
    settings = settings_from(snakemake.config)
    write_record(settings.raw["checkpoint"], snakemake.output.record)
