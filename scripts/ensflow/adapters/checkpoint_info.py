"""What a checkpoint needs and makes, read from its metadata without loading the model."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from ensflow.errors import ConfigError

# The demo model's class path, as anemoi's `config.model.model._target_` names a model class.
DEMO_MODEL_PREFIX = "ensflow.demo.model."
DEMO_MODEL_CLASS = f"{DEMO_MODEL_PREFIX}DemoEnsembleModel"  # what the demo checkpoint loads


@dataclass(frozen=True)
class FieldSpec:
    """One model variable and the MARS request that provides it."""

    name: str
    param: str
    levtype: str
    levelist: int | None = None
    accumulated: bool = False
    constant: bool = False


@dataclass(frozen=True)
class CheckpointInfo:
    path: str
    grid: str
    npoints: int
    input_fields: tuple[FieldSpec, ...]
    output_fields: tuple[FieldSpec, ...]
    timestep_hours: int
    demo_model: bool = False


def _spec(name: str, meta: dict[str, Any]) -> FieldSpec:
    """Roles as anemoi reads them (anemoi-transform `Variable`): an accumulation is
    `process: accumulation`, a constant `constant_in_time`; MARS keys from the `mars` block."""
    from anemoi.transform.variables import Variable

    var = Variable.from_dict(name, meta)
    mars = var.grib_keys
    if "param" not in mars:  # older checkpoints: names like z_500
        m = re.fullmatch(r"(.+)_(\d+)", name)
        mars = {"param": m.group(1), "levtype": "pl", "levelist": m.group(2)} if m else {
            "param": name, "levtype": "sfc"}
    level = mars.get("levelist")
    return FieldSpec(
        name=name,
        param=str(mars["param"]),
        levtype=str(mars.get("levtype", "sfc")),
        levelist=int(level) if level not in (None, "") else None,
        accumulated=bool(var.is_accumulation),
        constant=bool(var.is_constant_in_time),
    )


def _is_computed(name: str, meta: dict[str, Any]) -> bool:
    from anemoi.transform.variables import Variable

    return bool(Variable.from_dict(name, meta).is_computed_forcing)


def from_metadata(metadata: dict[str, Any], path: str = "<metadata>") -> CheckpointInfo:
    """Inputs are the data variables the model reads, less those anemoi computes itself."""
    try:
        dataset = metadata["dataset"]
        variables: list[str] = dataset["variables"]
        vmeta: dict[str, Any] = dataset.get("variables_metadata", {})
        data_in = metadata["data_indices"]["data"]["input"]
        data_out = metadata["data_indices"]["data"]["output"]
        grid = str(dataset.get("data_request", {}).get("grid", "unknown"))
        npoints = int(dataset["shape"][-1])
        timestep = str(metadata["config"]["data"].get("timestep", "6h"))
    except (KeyError, TypeError, IndexError) as exc:
        raise ConfigError(f"checkpoint {path}: metadata lacks {exc}") from None
    diagnostic = set(data_in.get("diagnostic", []))
    inputs = [
        _spec(variables[i], vmeta.get(variables[i], {}))
        for i in data_in["full"]
        if i not in diagnostic and not _is_computed(variables[i], vmeta.get(variables[i], {}))
    ]
    outputs = [_spec(variables[i], vmeta.get(variables[i], {})) for i in data_out["full"]]
    hours = int(timestep.rstrip("h")) if timestep.endswith("h") else 6
    target = str(metadata.get("config", {}).get("model", {}).get("model", {}).get("_target_", ""))
    demo = target.startswith(DEMO_MODEL_PREFIX)
    return CheckpointInfo(path, grid, npoints, tuple(inputs), tuple(outputs), hours, demo)


@cache
def read(path: str) -> CheckpointInfo:
    from anemoi.utils.checkpoints import load_metadata

    if not Path(path).is_file():
        raise ConfigError(f"checkpoint {path}: no such file")
    if Path(path).stat().st_size == 0:
        raise ConfigError(f"checkpoint {path}: empty file (0 bytes)")
    try:
        metadata = load_metadata(path)
    except Exception as exc:  # a zip that is not one, a torch file without anemoi metadata
        raise ConfigError(f"checkpoint {path}: not a readable anemoi checkpoint "
                          f"({type(exc).__name__}: {str(exc)[:200]})") from None
    return from_metadata(metadata, path)


def sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(16 * 1024 * 1024):
            digest.update(chunk)
    return digest.hexdigest()


def write_record(path: str, out: str | Path) -> None:
    """The checkpoint's sha256, computed once per cycle, for every product's provenance."""
    from ensflow import receipts

    info = read(path)
    receipts.write(out, {"checkpoint": path, "sha256": sha256(path), "grid": info.grid,
                         "demo_model": info.demo_model})
