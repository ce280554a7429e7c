"""Rule quest_member_fields: a member's quest fields from its GRIB files in the bucket."""

from ensflow.entry import job
from ensflow.stages import quest_stage

member = int(snakemake.wildcards.member)
with job(snakemake) as settings:
    quest_stage.member_fields_from_bucket(settings, member,
                                          snakemake.input.receipt, snakemake.output.fields)
