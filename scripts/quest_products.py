"""Rule quest_products: weekly quintile probabilities, six checked submission files."""

from pathlib import Path

from ensflow.entry import job
from ensflow.stages import quest_stage

with job(snakemake) as settings:
    quest_stage.products(settings, snakemake.input.published,
                         Path(snakemake.input.climatology[0]).parent,
                         list(snakemake.output.files), snakemake.output.anomalies,
                         snakemake.output.report)
