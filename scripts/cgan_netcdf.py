"""Rule cgan_netcdf: ensemble mean and standard deviation from the published store."""

from ensflow import cgan, logs
from ensflow.entry import settings_from

with logs.step("cgan_netcdf", snakemake.log[0]):
    cgan.write_netcdf(settings_from(snakemake.config), snakemake.input.published,
                      list(snakemake.input.indices), snakemake.output.netcdf)
