"""Configuration: validated against config/schema.yaml when the workflow starts.

Errors name the key and what is wrong, before anything runs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .cycle import normalise_cycle, parse_members
from .errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"

DEFAULTS: dict[str, Any] = {
    "max_member": 50,
    "results": "results",
    "synthetic": False,
    "demo": {"grid_step": 4.0, "perturbed_members": 4, "checkpoint_grid": "O48"},
    "opendata": {
        "endpoint_url": None,
        "region": "eu-central-1",
        "model": "ifs",
        "resol": "0p25",
    },
    "forecast": {"num_chunks": 1, "seed_base": 0, "bits_per_value": 16, "gpus": None,
                 "members_per_gpu": 1},
    "cgan": {
        "enabled": False,
        "store": "file://stores/cgan.icechunk",
        "store_endpoint_url": None,
        "members": "0-50",
        "members_per_batch": 6,
        "variables": ["tp", "2t", "sp", "ssr", "ssrd", "sf", "ro", "tcw", "tcwv", "tcc", "u700", "v700"],
        "steps": [36, 60, 3],
        "region": {"lat_min": -14.0, "lat_max": 25.0, "lon_min": 19.0, "lon_max": 55.0},
        "output_grid": "native",
        "ddof": 0,
        "accumulation": "since_start",
        "decode_workers": 2,
    },
    "quest": {
        "enabled": False,
        "team": "ensflow",
        "model": "aifsens",
        "variables": ["tas", "mslp", "pr"],
        "source": "forecast",
        "methods": {"tas": "linear", "mslp": "linear", "pr": "grid-box-average"},
        "store": "file://stores/aifs_ens_1p5.icechunk",
        "climatology": None,
        "climatology_units": {"tas": "K", "mslp": "Pa", "pr": "mm"},
        "expected_members": None,
        "allow_partial": False,
        "min_members": None,
        "password_env": "AIWQ_SUBMIT_PWD",
        "allow_any_issue_date": False,
    },
    "gcs": {
        "project": None,
        "credentials_file": None,
        "chunk_mb": 32,
        "parallel_uploads": 4,
        "retries": 6,
    },
    "report": {"gpu_price_per_hour": 0.0, "cpu_price_per_hour": 0.0, "currency": "USD",
               "log_excerpt_lines": 20},
}


def _merge(defaults: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(defaults)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        return f"config {key}: {error.message}"
    if error.validator == "required":
        return f"config {key}: {error.message}"
    return f"config key '{key}': {error.message}"


@dataclass(frozen=True)
class Settings:
    """The validated configuration, with the cycle normalised and members expanded."""

    raw: dict[str, Any]
    cycle: str
    members: list[int] = field(default_factory=list)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]


def validate(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> Settings:
    """Check the config against the schema, fill defaults, normalise the cycle and members."""
    merged = _merge(DEFAULTS, dict(config))
    validator = jsonschema.Draft202012Validator(_load_schema(schema_path))
    errors = sorted(validator.iter_errors(merged), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors[:5]))
    cycle = normalise_cycle(merged["cycle"])
    members = parse_members(merged["members"], merged["max_member"])
    fc = merged["forecast"]
    if fc["lead_time"] % fc["hours_per_file"]:
        raise ConfigError(
            f"config key 'forecast.hours_per_file': {fc['hours_per_file']} does not divide "
            f"forecast.lead_time {fc['lead_time']}"
        )
    cg = merged["cgan"]
    parse_members(cg["members"], 50, minimum=0)
    first, last, every = cg["steps"]
    if every <= 0 or last < first or (cg["accumulation"] == "per_interval" and first - every < 0):
        raise ConfigError(f"config key 'cgan.steps': {cg['steps']} must be [first, last, every] "
                          "with every > 0, last >= first and first >= every (accumulations "
                          "are differenced from the step before the first)")
    region = cg["region"]
    if region["lat_min"] >= region["lat_max"] or region["lon_min"] >= region["lon_max"]:
        raise ConfigError(f"config key 'cgan.region': {region} is empty")
    qu = merged["quest"]
    if qu["enabled"]:
        if not merged["synthetic"] and not qu["climatology"]:
            raise ConfigError("config key 'quest.climatology': required unless synthetic "
                              "(the demo makes its own)")
        if fc["lead_time"] < 768:
            raise ConfigError(f"config key 'forecast.lead_time': the quest needs 768 h, got "
                              f"{fc['lead_time']}")
        missing = [v for v in qu["variables"] if v not in qu["climatology_units"]]
        if missing:
            raise ConfigError(f"config key 'quest.climatology_units': no units for {missing}")
    merged["cycle"] = cycle
    return Settings(raw=merged, cycle=cycle, members=members)


def load(path: str | Path, overrides: dict[str, Any] | None = None) -> Settings:
    with open(path) as f:
        config = yaml.safe_load(f) or {}
    return validate(_merge(config, overrides or {}))


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """`key=value` as Snakemake's --config reads them (values parsed as YAML)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--config {pair!r}: expected key=value")
        out[key] = yaml.safe_load(value)
    return out


def load_like_snakemake(workdir: str | Path, configfiles: list[str] | None = None,
                        overrides: list[str] | None = None) -> Settings:
    """The config a `snakemake --configfile ... --config ...` run in `workdir` sees.

    Commands beside the run (status, report, purge) must agree with the run on the
    cycle, buckets and paths, so they merge the same files in the same order.
    """
    workdir = Path(workdir)
    merged: dict[str, Any] = {}
    for name in ["config/config.yaml", *(configfiles or [])]:
        path = Path(name) if Path(name).is_absolute() else workdir / name
        try:
            with open(path) as f:
                merged = _merge(merged, yaml.safe_load(f) or {})
        except OSError as exc:
            raise ConfigError(f"config file {path}: {exc.strerror}") from None
    return validate(_merge(merged, parse_overrides(overrides or [])))
