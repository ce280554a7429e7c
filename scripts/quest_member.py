"""Rule quest_member: one member's 1.5° fields into a fork of the store."""

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

member = int(snakemake.wildcards.member)
with logs.step(f"quest_member member {member:03d}", snakemake.log[0]):
    quest_stage.write_member(settings_from(snakemake.config), member, snakemake.input.fields,
                             snakemake.input.setup, snakemake.output.fork)
