"""Rule fetch_input: bucket → scratch pickle, within the scratch window, checked."""

from ensflow.entry import job
from ensflow.stages.inputs import fetch_input

member = int(snakemake.wildcards.member)
with job(snakemake) as settings:
    fetch_input(settings, member, snakemake.input.receipt,
                snakemake.output.pkl)
