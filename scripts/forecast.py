"""Rule forecast: input pickle → 11 GRIB windows; on failure the scratch slot is given back."""

from pathlib import Path

from ensflow import logs
from ensflow.adapters import devices
from ensflow.entry import job
from ensflow.layout import Layout
from ensflow.stages.forecast import run_member, run_on_worker

member = int(snakemake.wildcards.member)
with job(snakemake) as settings:
    fc = settings.forecast
    gpus = devices.visible_devices(fc.gpus) if fc.device.startswith("cuda") else []
    args = (member, snakemake.input.pkl, list(snakemake.output.gribs),
            snakemake.output.get("quest"), snakemake.threads)
    try:
        with devices.device_slot(gpus, fc.members_per_gpu,
                                 Layout.of(settings).gpu_slots()) as slot:
            result = (run_on_worker(settings, slot, *args) if fc.worker
                      else run_member(settings, *args))
        logs.annotate(gpu_slot=slot.name, inference=result["inference"])
    except BaseException:
        # The input is a temp file: drop it so the failed member stops holding scratch.
        Path(snakemake.input.pkl).unlink(missing_ok=True)
        for path in snakemake.output.gribs:
            Path(path).unlink(missing_ok=True)
        raise
