"""What every product says about where it came from."""

from __future__ import annotations

import hashlib
import json
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

from ensflow import __version__
from ensflow.config import Settings

REPO = Path(__file__).resolve().parents[2]


@cache
def code_version() -> str:
    """Package version plus the git commit (and '-dirty') when run from a checkout."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                                capture_output=True, text=True, timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return f"{__version__}+g{commit}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return __version__


def config_digest(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def record(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Code version, the settings the job was handed (and their digest), what it made it from."""
    return {
        "code_version": code_version(),
        "settings": settings.config,
        "config_sha256_16": config_digest(settings.config),
        "synthetic": bool(settings.synthetic),
        **extra,
    }
