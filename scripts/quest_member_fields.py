"""Rule quest_member_fields: a member's quest fields from its GRIB files in the bucket."""

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

member = int(snakemake.wildcards.member)
with logs.step(f"quest_member_fields member {member:03d}", snakemake.log[0]):
    quest_stage.member_fields_from_bucket(settings_from(snakemake.config), member,
                                          snakemake.input.receipt, snakemake.output.fields)
