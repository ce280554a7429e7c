"""Rule forecast: input pickle → 11 GRIB windows; on failure the scratch slot is given back."""

from pathlib import Path

from ensflow import logs
from ensflow.entry import settings_from
from ensflow.forecast import run_member

member = int(snakemake.wildcards.member)
with logs.step(f"forecast member {member:03d}", snakemake.log[0]):
    try:
        run_member(settings_from(snakemake.config), member, snakemake.input.pkl,
                   list(snakemake.output.gribs), snakemake.output.get("quest"))
    except BaseException:
        # The input is a temp file: drop it so the failed member stops holding scratch.
        Path(snakemake.input.pkl).unlink(missing_ok=True)
        for path in snakemake.output.gribs:
            Path(path).unlink(missing_ok=True)
        raise
