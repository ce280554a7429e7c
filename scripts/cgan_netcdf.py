"""Rule cgan_netcdf: ensemble mean and standard deviation of the published cycle."""

from ensflow.entry import job
from ensflow.stages import cgan

with job(snakemake) as settings:
    cgan.write_netcdf(settings, snakemake.input.published, list(snakemake.input.indices),
                      list(snakemake.input.sums), snakemake.output.netcdf)
