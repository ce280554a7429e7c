"""ensflow: an ensemble forecast cycle, from ECMWF open data to products, as a Snakemake workflow.

The package holds every piece of logic; Snakemake rules only wire files to its functions.
It never imports snakemake.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ensflow")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"
