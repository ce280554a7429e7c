"""Rule cgan_netcdf: ensemble mean and standard deviation from the published store."""

from ensflow.entry import job
from ensflow.stages import cgan

with job(snakemake) as settings:
    cgan.write_netcdf(settings, snakemake.input.published,
                      list(snakemake.input.indices), snakemake.output.netcdf)
