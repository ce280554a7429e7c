"""What ECMWF open data publishes, read from data/opendata_catalogue.yaml (cited there).

Every stage asks here where a field lives (stream, type, member number) and whether ECMWF
publishes it at all, so nothing reads a name or stream that real open data lacks. The
date matters: IFS Cycle 50r1 (2026-05-12) retired `scda` and moved the control forecast
from `enfo` to `oper`.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from functools import cache
from importlib.resources import files
from typing import Any

import yaml

from ensflow.errors import OpenDataError


@dataclass(frozen=True)
class Product:
    """One kind of open-data object: a stream and type, and the member number its lines carry."""

    stream: str
    type: str
    file_type: str
    number: int | None  # None: the index lines have no `number` (cf, fc)

    @property
    def index_number(self) -> int:
        """The member as ensflow's index reader keys it (lines without `number` are 0)."""
        return self.number or 0


@dataclass(frozen=True)
class Field:
    """A field as open data names it: param, level type and level."""

    param: str
    levtype: str
    levelist: int | None = None

    def label(self) -> str:
        return f"{self.param}{'/' + str(self.levelist) if self.levelist is not None else ''} ({self.levtype})"


def _steps(ranges: list[list[int]]) -> set[int]:
    return {s for a, b, every in ranges for s in range(a, b + 1, every)}


class Catalogue:
    """Queries on the catalogue; raises OpenDataError naming what ECMWF does not publish."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.cycle_50r1 = dt.datetime.fromisoformat(str(data["cycle_50r1"]))
        self.index_keys: list[str] = list(data["index_keys"])
        self.model_names: dict[str, dict[str, Any]] = data["model_names"]
        self.pl_renames: dict[str, dict[str, Any]] = data["pressure_level_renames"]
        self.constants: dict[str, Any] = data["constants"]
        self.plausible: dict[str, tuple[float, float]] = {
            k: (float(lo), float(hi)) for k, (lo, hi) in data["plausible"].items()}

    def _stream(self, name: str) -> dict[str, Any]:
        s = self.data["streams"][name]
        return {**self.data["streams"][s["same_as"]], **s} if "same_as" in s else s

    def before_50r1(self, base: dt.datetime) -> bool:
        return base < self.cycle_50r1

    def hres_stream(self, base: dt.datetime) -> str:
        """`oper`, or `scda` for 06/18 UTC before 50r1 (ecmwf-opendata's patch_stream)."""
        return "scda" if self.before_50r1(base) and base.hour in (6, 18) else "oper"

    def member_product(self, base: dt.datetime, member: int) -> Product:
        """Where ENS member `member` is: pf n in enfo; the control (0) in enfo cf, or since
        50r1 in the HRES stream (oper fc)."""
        if member > 0:
            lo, hi = self._stream("enfo")["types"]["pf"]["members"]
            if not lo <= member <= hi:
                raise OpenDataError(f"member {member}: ENS open data has members {lo}-{hi}")
            return Product("enfo", "pf", "ef", member)
        if self.before_50r1(base):
            return Product("enfo", "cf", "ef", None)
        return self.hres(base)

    def hres(self, base: dt.datetime) -> Product:
        stream = self.hres_stream(base)
        return Product(stream, "fc", self._stream(stream)["file_type"], None)

    def constants_product(self, base: dt.datetime) -> tuple[Product, int]:
        """The stream of the constant fields (lsm, z, slor, sdor) and the step they are read at."""
        return self.hres(base), int(self.constants["step"])

    def check(self, base: dt.datetime, product: Product, field: Field, step: int) -> None:
        """Refuse a request for something ECMWF does not publish, saying what and where."""
        s = self._stream(product.stream)
        where = f"{product.stream} {product.type} at {base:%Y-%m-%d %H} UTC step {step}"
        hours = s.get("times_before_50r1", s["times"]) if self.before_50r1(base) else s["times"]
        if s.get("until_50r1") and not self.before_50r1(base):
            raise OpenDataError(f"{product.stream}: retired with IFS 50r1 ({self.cycle_50r1:%Y-%m-%d})")
        if base.hour not in hours:
            raise OpenDataError(f"{where}: {product.stream} runs at {hours} UTC only")
        t = s["types"].get(product.type)
        if t is None or (t.get("after_50r1") is False and not self.before_50r1(base)):
            raise OpenDataError(f"{where}: open data has no {product.stream} {product.type} "
                                "(the control forecast is oper fc since IFS 50r1)")
        if step not in _steps(s["steps"][f"{base.hour:02d}"]):
            raise OpenDataError(f"{where}: step {step} is not published")
        lev = s["levtypes"].get(field.levtype)
        if lev is None:
            raise OpenDataError(f"{field.label()}: {product.stream} has no level type {field.levtype}")
        if field.levtype == "sfc":
            if field.param not in lev:
                raise OpenDataError(f"{field.label()}: not published in {product.stream}")
            return
        levels = list(lev["levels"]) + ([] if self.before_50r1(base) else lev.get("levels_from_50r1", []))
        if field.param not in lev["params"] or field.levelist not in levels:
            raise OpenDataError(f"{field.label()}: not published in {product.stream} "
                                f"({field.levtype} params {lev['params']}, levels {levels})")

    def opendata_field(self, param: str, levtype: str, levelist: int | None) -> tuple[Field, float]:
        """A model (MARS) field as open data publishes it, and the factor to the model's units:
        stl1 is sot on soil level 1, z on pressure levels is gh times g."""
        if levtype == "sfc" and param in self.model_names:
            m = self.model_names[param]
            return Field(m["param"], m["levtype"], int(m["levelist"])), 1.0
        if levtype == "pl" and param in self.pl_renames:
            r = self.pl_renames[param]
            return Field(r["param"], "pl", levelist), float(r["scale"])
        return Field(param, levtype, levelist), 1.0

    def plausible_range(self, param: str) -> tuple[float, float] | None:
        return self.plausible.get(param)


@cache
def load() -> Catalogue:
    text = files("ensflow").joinpath("data/opendata_catalogue.yaml").read_text()
    return Catalogue(yaml.safe_load(text))
