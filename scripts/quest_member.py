"""Rule quest_member: one member's 1.5° fields into a fork of the store."""

from ensflow.entry import job
from ensflow.stages import quest_stage

member = int(snakemake.wildcards.member)
with job(snakemake) as settings:
    quest_stage.write_member(settings, member, snakemake.input.fields,
                             snakemake.input.setup, snakemake.output.fork)
