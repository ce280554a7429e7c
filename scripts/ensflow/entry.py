"""Start-up for the thin entry scripts that rules call: one `with job(snakemake)` each."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from ensflow import logs
from ensflow.config import Settings
from ensflow.layout import job_label


def job_name(rule: str, wildcards: dict[str, str]) -> str:
    """`forecast member 001`, `preflight aifs`: what the log's start/done lines say."""
    return " ".join(filter(None, [rule, job_label(wildcards)]))


@contextlib.contextmanager
def job(smk: Any) -> Iterator[Settings]:
    """Log, record and settings of one Snakemake job.

    The settings are the rule's `params.settings` (only what the rule declares), the cores
    and resources are what Snakemake gave the job; both go into the job's record.
    """
    wildcards = {k: str(v) for k, v in smk.wildcards.items()}
    meta = {"rule": smk.rule, "wildcards": wildcards, "threads": int(smk.threads),
            "resources": {k: v for k, v in smk.resources.items()
                          if not k.startswith("_") and isinstance(v, int | float | str)}}
    with logs.step(job_name(smk.rule, wildcards), smk.log[0], smk.log.get("record"), meta):
        yield Settings.from_config(dict(smk.params.settings))
