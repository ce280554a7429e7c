"""Rule fetch_input: bucket → scratch pickle, within the scratch window, checked."""

from ensflow import logs
from ensflow.entry import settings_from
from ensflow.inputs import fetch_input

member = int(snakemake.wildcards.member)
with logs.step(f"fetch_input member {member:03d}", snakemake.log[0]):
    fetch_input(settings_from(snakemake.config), member, snakemake.input.receipt,
                snakemake.output.pkl)
