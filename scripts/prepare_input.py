"""Rule prepare_input: open data → input_state_member_NNN.pkl in the bucket."""

from ensflow import logs
from ensflow.entry import settings_from
from ensflow.inputs import prepare_input

member = int(snakemake.wildcards.member)
with logs.step(f"prepare_input member {member:03d}", snakemake.log[0]):
    prepare_input(settings_from(snakemake.config), member, snakemake.output.receipt)
