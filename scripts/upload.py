"""Rule upload: GRIB windows → bucket, then the receipt (temp() then frees scratch)."""

from pathlib import Path

from ensflow.entry import job
from ensflow.ops import scratch
from ensflow.stages.upload import upload_member

member = int(snakemake.wildcards.member)
directory = Path(snakemake.input.gribs[0]).parent
with job(snakemake) as settings:
    scratch.clear_failed(directory)
    try:
        upload_member(settings, member, list(snakemake.input.gribs),
                      snakemake.output.receipt, snakemake.input.input_receipt,
                      snakemake.input.checkpoint_record)
    except BaseException:
        scratch.mark_failed(directory)  # keep the GRIBs for a retry, free the slot
        raise
