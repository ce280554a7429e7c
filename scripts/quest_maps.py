"""Rule quest_maps: ensemble-mean anomaly and most likely quintile maps (PNG)."""

from pathlib import Path

from ensflow.entry import job
from ensflow.stages import quest_stage

with job(snakemake) as settings:
    quest_stage.plots(settings, Path(snakemake.input.files[0]).parent,
                      list(snakemake.output.maps))
