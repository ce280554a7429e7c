"""The cGAN stage's plan: which variables, members, steps and open-data objects, derived
from the config once. Shared by the stage, the preflight, the layout and the demo mirror."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ensflow.adapters.opendata import OpenDataLayout
from ensflow.adapters.opendata_catalogue import Field, Product
from ensflow.adapters.opendata_catalogue import load as load_catalogue
from ensflow.config import Settings
from ensflow.cycle import cycle_datetime, parse_members

ACCUMULATED = frozenset({"tp", "cp", "ssr", "ssrd", "sf", "ro", "str", "strd"})
# Accumulations that cannot be negative; `str` (net thermal radiation) mostly is.
NONNEGATIVE = frozenset({"tp", "cp", "ssr", "ssrd", "sf", "ro", "strd"})
# The names the team's cGAN file uses (stream_cgan_variables.py CGAN_SURFACE_VARS): ECMWF's
# short names except 2t, which the file calls t2m; pressure-level winds are u700, v700.
OUTPUT_NAMES = {"2t": "t2m"}
# What an accumulated variable holds in the file: totals since step 0 (the team's current
# producer and its readers), or amounts per interval ending at each step (the trained
# cGAN's data.py: "data[:, j] has accumulation between times j and j+1").
ACCUMULATION_TEXT = {
    "since_start": "total since step 0 (as ECMWF publishes it)",
    "per_interval": "per interval ending at the step (differenced from totals since step 0)",
}
UNITS = {"tp": "m", "cp": "m", "sf": "m of water equivalent", "ro": "m", "ssr": "J m-2",
         "ssrd": "J m-2", "2t": "K", "sp": "Pa", "tcw": "kg m-2", "tcwv": "kg m-2",
         "tcc": "(0 - 1)", "u": "m s-1", "v": "m s-1", "msl": "Pa"}
CGAN_0P1 = {"lat": (-13.65, 24.65, 384), "lon": (19.15, 54.25, 352)}


@dataclass(frozen=True)
class Variable:
    """A cGAN variable (`tp`, `u700`) and the open-data message that carries it."""

    name: str
    param: str
    levtype: str
    levelist: int | None

    @property
    def accumulated(self) -> bool:
        return self.param in ACCUMULATED

    @property
    def nonnegative(self) -> bool:
        return self.param in NONNEGATIVE

    @property
    def output_name(self) -> str:
        return OUTPUT_NAMES.get(self.name, self.name)

    @property
    def field(self) -> Field:
        return Field(self.param, self.levtype, self.levelist)

    @classmethod
    def parse(cls, name: str) -> Variable:
        head = name.rstrip("0123456789")
        if head != name and head in {"u", "v", "t", "q", "z", "gh", "w", "r"}:
            return cls(name, head, "pl", int(name[len(head):]))
        return cls(name, name, "sfc", None)


@dataclass(frozen=True)
class Plan:
    """Everything a cGAN run needs to know, derived from the config once."""

    cycle: str
    base: dt.datetime
    variables: tuple[Variable, ...]
    members: tuple[int, ...]
    steps: tuple[int, ...]
    previous_step: int
    members_per_batch: int
    region: dict[str, float]
    layout: OpenDataLayout
    accumulation: str = "since_start"

    @property
    def per_interval(self) -> bool:
        return self.accumulation == "per_interval"

    def fetch_steps(self, var: Variable) -> list[int]:
        """Per-interval amounts need the step before the first, to difference."""
        return ([self.previous_step] if var.accumulated and self.per_interval else []) + list(self.steps)

    @property
    def all_steps(self) -> list[int]:
        return sorted({s for v in self.variables for s in self.fetch_steps(v)})

    def batches(self) -> list[tuple[int, ...]]:
        n = self.members_per_batch
        return [self.members[i:i + n] for i in range(0, len(self.members), n)]

    def product(self, member: int) -> Product:
        """enfo pf for members; the control from enfo cf, or oper fc since IFS 50r1."""
        return load_catalogue().member_product(self.base, member)

    def objects(self, step: int) -> dict[str, list[int]]:
        """The open-data objects of one step and the members each holds."""
        out: dict[str, list[int]] = {}
        for m in self.members:
            out.setdefault(self.layout.url(self.base, step, self.product(m)), []).append(m)
        return out


def plan_from(settings: Settings) -> Plan:
    c = settings.cgan
    first, last, every = c.steps
    return Plan(
        cycle=settings.cycle,
        base=cycle_datetime(settings.cycle),
        variables=tuple(Variable.parse(v) for v in c.variables),
        members=tuple(parse_members(c.members, 50, minimum=0)),
        steps=tuple(range(first, last + 1, every)),
        previous_step=first - every,
        members_per_batch=c.members_per_batch,
        region=dict(c.region),
        layout=OpenDataLayout.from_settings(settings.opendata),
        accumulation=c.accumulation,
    )
