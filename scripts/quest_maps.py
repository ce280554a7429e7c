"""Rule quest_maps: ensemble-mean anomaly and most likely quintile maps (PNG)."""

from pathlib import Path

from ensflow import logs, quest_stage
from ensflow.entry import settings_from

with logs.step("quest_maps", snakemake.log[0]):
    quest_stage.plots(settings_from(snakemake.config), Path(snakemake.input.files[0]).parent,
                      list(snakemake.output.maps))
