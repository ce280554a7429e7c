"""Rule forecast: input pickle → 11 GRIB windows; on failure the scratch slot is given back."""

from pathlib import Path

from ensflow.adapters import devices
from ensflow.entry import job
from ensflow.stages.forecast import run_member

member = int(snakemake.wildcards.member)
with job(snakemake) as settings:
    fc = settings.forecast
    gpus = devices.visible_devices(fc.gpus) if fc.device.startswith("cuda") else []
    try:
        with devices.device_slot(gpus, fc.members_per_gpu,
                                 Path(settings.scratch) / ".gpu-slots"):
            run_member(settings, member, snakemake.input.pkl, list(snakemake.output.gribs),
                       snakemake.output.get("quest"), snakemake.threads)
    except BaseException:
        # The input is a temp file: drop it so the failed member stops holding scratch.
        Path(snakemake.input.pkl).unlink(missing_ok=True)
        for path in snakemake.output.gribs:
            Path(path).unlink(missing_ok=True)
        raise
