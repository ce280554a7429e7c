"""Rule quest_maps: ensemble-mean anomaly and most likely quintile maps (PNG)."""

from ensflow.entry import job
from ensflow.stages import quest_stage

with job(snakemake) as settings:
    quest_stage.plots(settings, list(snakemake.input.files), snakemake.input.anomalies,
                      list(snakemake.output.maps))
