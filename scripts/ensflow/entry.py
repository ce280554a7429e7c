"""Shared start-up for the thin entry scripts that rules call."""

from __future__ import annotations

from typing import Any

from . import storage
from .config import Settings, validate


def settings_from(config: dict[str, Any]) -> Settings:
    """Validate the workflow's config and point the storage layer at its settings."""
    settings = validate(config)
    storage.configure(storage.options_from_config(settings.raw))
    return settings
