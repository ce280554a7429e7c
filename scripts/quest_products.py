"""Rule quest_products: weekly quintile probabilities, six checked submission files."""

from pathlib import Path

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

with logs.step("quest_products", snakemake.log[0]):
    settings = settings_from(snakemake.config)
    quest_stage.products(settings, snakemake.input.published,
                         Path(snakemake.input.climatology[0]).parent,
                         Path(snakemake.output.files[0]).parent, snakemake.output.report)
