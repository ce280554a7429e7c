"""Configuration: validated against config/schema.yaml (which also holds every default),
then read as typed, per-section settings.

Each rule hands its job only the settings it uses, as a plain dict in `params:` (so
Snakemake records them and `snakemake -n` says "params changed" for exactly the jobs a
change affects); `JOB_SETTINGS` is that list. A job builds its `Settings` from the dict;
a setting it was not handed is `Withheld` and fails the job naming the key.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime as dt
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from ensflow.cycle import cycle_datetime, normalise_cycle, parse_members
from ensflow.errors import ConfigError

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


class SettingWithheld(ConfigError, AttributeError):
    """A job used a setting its rule does not hand it (add it to JOB_SETTINGS)."""


class Withheld:
    """Stands for a setting this job was not handed; any use of it fails naming the key."""

    __slots__ = ("key",)

    def __init__(self, key: str) -> None:
        object.__setattr__(self, "key", key)

    def __repr__(self) -> str:
        return f"<withheld {self.key}>"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Withheld, (self.key,))

    def _refuse(self, *_: Any, **__: Any) -> Any:
        raise SettingWithheld(f"setting '{self.key}' is not among this job's params "
                              "(ensflow.config.JOB_SETTINGS)")

    __getattr__ = _refuse
    __bool__ = __int__ = __float__ = __index__ = __str__ = __format__ = _refuse
    __iter__ = __len__ = __getitem__ = __contains__ = __eq__ = __lt__ = __add__ = _refuse
    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class DemoSettings:
    grid_step: float
    perturbed_members: int
    checkpoint_grid: str


@dataclass(frozen=True)
class OpenDataSettings:
    root: str
    endpoint_url: str | None
    region: str
    model: str
    resol: str


@dataclass(frozen=True)
class ForecastSettings:
    lead_time: int
    hours_per_file: int
    device: str
    precision: str
    num_chunks: int
    seed_base: int
    bits_per_value: int
    gpus: int | None
    members_per_gpu: int
    worker: bool
    worker_idle_seconds: float
    writer_queue: int
    upload_ahead: bool


@dataclass(frozen=True)
class CganSettings:
    enabled: bool
    store: str
    store_endpoint_url: str | None
    members: str | int | list[int]
    members_per_batch: int
    variables: list[str]
    steps: list[int]
    region: dict[str, float]
    output_grid: str
    ddof: int
    accumulation: str
    decode_workers: int


@dataclass(frozen=True)
class QuestSettings:
    enabled: bool
    team: str
    model: str
    variables: list[str]
    source: str
    methods: dict[str, str]
    store: str
    climatology: str | None
    climatology_units: dict[str, str]
    expected_members: int | None
    allow_partial: bool
    min_members: int | None
    password_env: str
    allow_any_issue_date: bool


@dataclass(frozen=True)
class GcsSettings:
    project: str | None
    credentials_file: str | None
    chunk_mb: int
    parallel_uploads: int
    retries: int


@dataclass(frozen=True)
class ReportSettings:
    gpu_price_per_hour: float
    cpu_price_per_hour: float
    currency: str
    log_excerpt_lines: int


@dataclass(frozen=True)
class WatchSettings:
    runs: str
    profile: str | None
    poll_seconds: float
    lookback_hours: float
    max_parallel: int
    max_attempts: int
    stages: dict[str, dict[str, Any]]


SECTIONS: dict[str, type] = {
    "demo": DemoSettings, "opendata": OpenDataSettings, "forecast": ForecastSettings,
    "cgan": CganSettings, "quest": QuestSettings, "gcs": GcsSettings, "report": ReportSettings,
    "watch": WatchSettings,
}
SCALARS = ("cycle", "members", "max_member", "window", "bucket", "scratch", "results",
           "synthetic", "checkpoint")


@dataclass(frozen=True)
class Settings:
    """The validated configuration (or the part of it one job was handed), typed."""

    config: dict[str, Any]
    cycle: str
    members: list[int]
    max_member: int
    window: int
    bucket: str
    scratch: str
    results: str
    synthetic: bool
    checkpoint: str
    demo: DemoSettings
    opendata: OpenDataSettings
    forecast: ForecastSettings
    cgan: CganSettings
    quest: QuestSettings
    gcs: GcsSettings
    report: ReportSettings = field(repr=False)
    watch: WatchSettings = field(repr=False)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> Settings:
        """From a validated config, or from a job's params (missing keys are withheld)."""

        def get(d: dict[str, Any], key: str, path: str) -> Any:
            return d[key] if key in d else Withheld(path)

        sections = {}
        for name, kind in SECTIONS.items():
            given = config.get(name, {})
            sections[name] = kind(**{f.name: get(given, f.name, f"{name}.{f.name}")
                                     for f in dataclasses.fields(kind)})
        scalars = {k: get(config, k, k) for k in SCALARS}
        if "members" in config and "max_member" in config:
            scalars["members"] = parse_members(config["members"], config["max_member"])
        return cls(config=config, **scalars, **sections)

    def handed(self, path: str) -> bool:
        """Whether this job was handed the setting (or section) `path`."""
        node: Any = self.config
        for part in path.split("."):
            if not isinstance(node, dict) or part not in node:
                return False
            node = node[part]
        return True


# ------------------------------------------------------------------ what each job uses

# What a job needs to reach buckets (ensflow.adapters.storage.Storage.from_settings).
STORAGE_SETTINGS = ("gcs", "opendata.endpoint_url", "opendata.region")
_CGAN_PLAN = ("cycle", "opendata", "cgan.variables", "cgan.members", "cgan.steps",
              "cgan.members_per_batch", "cgan.region", "cgan.accumulation")
_CGAN_STORE = (*_CGAN_PLAN, *STORAGE_SETTINGS, "cgan.store", "cgan.store_endpoint_url", "synthetic")
_QUEST = ("cycle", "synthetic", *STORAGE_SETTINGS, "quest.variables", "quest.store")
# What a member's forecast output depends on. Its GRIBs are temp() and gone once uploaded,
# so the upload receipt (the durable result of the member chain) carries these too: a
# change re-runs fetch_input -> forecast -> upload and what follows, nothing before.
_FORECAST_OUTPUT = ("cycle", "checkpoint", "forecast.lead_time", "forecast.hours_per_file",
                    "forecast.device", "forecast.precision", "forecast.num_chunks",
                    "forecast.seed_base", "forecast.bits_per_value", "quest.enabled",
                    "quest.source", "quest.variables", "quest.methods")

JOB_SETTINGS: dict[str, tuple[str, ...]] = {
    "demo_checkpoint": ("demo.checkpoint_grid",),
    "demo_mirror": ("cycle", "demo", "opendata", "cgan.enabled", *_CGAN_PLAN),
    "preflight_aifs": ("cycle", "members", "checkpoint", "bucket", "scratch", "window",
                       "synthetic", "opendata", "gcs", "forecast.lead_time",
                       "forecast.bits_per_value", "forecast.device", "forecast.gpus",
                       "quest.enabled", "quest.allow_any_issue_date", "quest.climatology",
                       "quest.password_env", "quest.variables", "quest.climatology_units"),
    "preflight_cgan": (*_CGAN_PLAN, *STORAGE_SETTINGS),
    "checkpoint_record": ("checkpoint",),
    "prepare_input": ("cycle", "checkpoint", "opendata", "bucket", "scratch", "synthetic",
                      *STORAGE_SETTINGS),
    "fetch_input": ("cycle", "checkpoint", "scratch", "window", *STORAGE_SETTINGS),
    "forecast": (*_FORECAST_OUTPUT, "scratch", "forecast.gpus", "forecast.members_per_gpu",
                 "forecast.worker", "forecast.worker_idle_seconds", "forecast.writer_queue",
                 # windows sent as they are done (the upload job then only checks them)
                 "forecast.upload_ahead", "bucket", *STORAGE_SETTINGS),
    "upload": (*_FORECAST_OUTPUT, "bucket", "synthetic", *STORAGE_SETTINGS),
    "cgan_setup": _CGAN_STORE,
    "cgan_batch": _CGAN_STORE,
    "cgan_publish": _CGAN_STORE,
    "cgan_netcdf": (*_CGAN_STORE, "cgan.ddof", "cgan.output_grid"),
    "quest_member_fields": (*_QUEST, "bucket", "scratch", "forecast.lead_time",
                            "forecast.hours_per_file", "quest.methods"),
    "quest_setup": (*_QUEST, "max_member", "quest.allow_any_issue_date"),
    "quest_member": _QUEST,
    "quest_publish": (*_QUEST, "members", "quest.expected_members", "quest.allow_partial",
                      "quest.min_members"),
    "demo_climatology": (*_QUEST, "quest.climatology_units"),
    "quest_climatology": (*_QUEST, "quest.climatology", "quest.climatology_units",
                          "quest.password_env"),
    "quest_products": (*_QUEST, "members", "quest.climatology", "quest.climatology_units",
                       "quest.allow_partial", "quest.team", "quest.model"),
    "quest_maps": (*_QUEST, "quest.team", "quest.model", "quest.climatology_units"),
    "quest_upload_prepare": (*_QUEST, "quest.team", "quest.model", "quest.password_env"),
}


def job_params(config: dict[str, Any], job: str) -> dict[str, Any]:
    """The part of a validated config that `job` uses, as plain values Snakemake records."""
    out: dict[str, Any] = {}
    paths = list(JOB_SETTINGS[job])
    if "members" in paths:
        paths.append("max_member")  # members are read against it
    for path in paths:
        *parents, leaf = path.split(".")
        src, dst = config, out
        for p in parents:
            src, dst = src[p], dst.setdefault(p, {})
        dst[leaf] = copy.deepcopy(src[leaf])
    return out


# ------------------------------------------------------------------ validation


@cache
def _load_schema(path: Path = SCHEMA_PATH) -> dict[str, Any]:
    with open(path) as f:
        return yaml.safe_load(f)


def _fill_defaults(schema: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """Every `default:` of the schema where the config says nothing (the one place defaults live)."""
    out = copy.deepcopy(data)
    for key, sub in schema.get("properties", {}).items():
        if key not in out and "default" in sub:
            out[key] = copy.deepcopy(sub["default"])
        elif (sub.get("type") == "object" and "properties" in sub
              and isinstance(out.get(key, {}), dict)):
            out[key] = _fill_defaults(sub, out.get(key, {}))
    return out


def _merge(base: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for key, value in given.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator in ("additionalProperties", "required"):
        return f"config {key}: {error.message}"
    if error.validator == "pattern" and "title" in error.schema:
        return f"config key '{key}': {error.instance!r} is not {error.schema['title']}"
    return f"config key '{key}': {error.message}"


def _check_not_future(cycle: str, allowed: bool) -> None:
    """ECMWF publishes a cycle hours after its base time; a later one is a typo or a demo."""
    now = dt.datetime.now(dt.UTC).replace(tzinfo=None)
    if cycle_datetime(cycle) > now and not allowed:
        raise ConfigError(f"config key 'cycle': {cycle} is in the future (now {now:%Y-%m-%d %H:%M} "
                          "UTC); set allow_future_cycle: true for a synthetic demo")


def _check_units(variables: list[str], units: dict[str, str]) -> None:
    """Every variable's climatology units must be ones its model units convert to."""
    from ensflow.science.quest import UNIT_FACTORS, VARIABLES

    for var in variables:
        model = VARIABLES[var].model_units
        known = sorted(to for frm, to in UNIT_FACTORS if frm == model)
        if (model, units[var]) not in UNIT_FACTORS:
            raise ConfigError(f"config key 'quest.climatology_units.{var}': {units[var]!r} is not "
                              f"a unit {var} converts to from {model} (known: {', '.join(known)})")


def validate(config: dict[str, Any], schema_path: Path = SCHEMA_PATH) -> Settings:
    """Check the config against the schema, fill defaults, normalise the cycle and members."""
    schema = _load_schema(schema_path)
    merged = _fill_defaults(schema, dict(config))
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(merged), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("; ".join(_describe(e) for e in errors[:5]))
    merged["cycle"] = normalise_cycle(merged["cycle"])
    _check_not_future(merged["cycle"], merged["allow_future_cycle"])
    parse_members(merged["members"], merged["max_member"])
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
        _check_units(qu["variables"], qu["climatology_units"])
        if qu["allow_any_issue_date"] and cycle_datetime(merged["cycle"]).hour:
            raise ConfigError(f"config key 'quest.enabled': cycle {merged['cycle']} is not a 00 UTC "
                              "run; quest.store keeps one cycle per issue date (a day), which "
                              "that day's 00 UTC cycle holds; set quest.enabled: false for it")
    return Settings.from_config(merged)


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
