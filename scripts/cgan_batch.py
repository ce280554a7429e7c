"""Rule cgan_batch: fetch, decode and cut one batch of members into a fork of the store."""

from ensflow.entry import job
from ensflow.stages import cgan

# Decoding runs in worker processes that re-import this file: only the parent works.
if __name__ == "__main__":
    batch = int(snakemake.wildcards.batch)
    with job(snakemake) as settings:
        cgan.write_batch(settings, batch, list(snakemake.input.indices), snakemake.threads,
                         snakemake.input.setup, snakemake.output.fork, snakemake.output.sums)
