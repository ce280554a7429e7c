"""Rule prepare_input: open data → input_state_member_NNN.pkl in the bucket."""

from ensflow.entry import job
from ensflow.stages.inputs import prepare_input

member = int(snakemake.wildcards.member)
with job(snakemake) as settings:
    prepare_input(settings, member, snakemake.output.receipt)
