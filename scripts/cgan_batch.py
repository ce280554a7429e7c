"""Rule cgan_batch: fetch, decode and cut one batch of members into a fork of the store."""

from ensflow import cgan, logs
from ensflow.entry import settings_from

# Decoding runs in worker processes that re-import this file: only the parent works.
if __name__ == "__main__":
    batch = int(snakemake.wildcards.batch)
    with logs.step(f"cgan_batch {batch:02d}", snakemake.log[0]):
        cgan.write_batch(settings_from(snakemake.config), batch, list(snakemake.input.indices),
                         snakemake.input.setup, snakemake.output.fork)
