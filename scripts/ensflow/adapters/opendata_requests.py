"""The one mapping from a checkpoint's input variables to open-data fields.

Derived from the checkpoint's own metadata (its `mars` blocks, `constant_in_time`;
computed forcings are not requested at all) plus the catalogue's renames: `stl1` is `sot`
on soil level 1, `z` on pressure levels is `gh` times g, and the constant fields come from
the HRES stream (oper fc, no member number) at step 0, as the team's ea-aifs script and
anemoi's open-data input do.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from ensflow.adapters.checkpoint_info import CheckpointInfo, FieldSpec
from ensflow.adapters.opendata import Key, OpenDataLayout
from ensflow.adapters.opendata_catalogue import Catalogue, Field, Product
from ensflow.adapters.opendata_catalogue import load as load_catalogue
from ensflow.errors import OpenDataError


@dataclass(frozen=True)
class FieldRequest:
    """One model variable of one member at one date, as open data publishes it."""

    variable: str
    date: dt.datetime
    product: Product
    step: int
    field: Field
    scale: float  # open-data units -> model units (g for gh -> z)

    @property
    def key(self) -> Key:
        """How the object's index lists it (index lines without `number` are member 0)."""
        return (self.field.param, self.field.levtype, self.field.levelist, self.product.index_number)

    def describe(self) -> str:
        p = self.product
        member = f" number {p.number}" if p.number is not None else ""
        scale = f" x {self.scale:g}" if self.scale != 1.0 else ""
        return (f"{self.variable} <- {self.field.label()}{scale} from {p.stream} {p.type}{member} "
                f"{self.date:%Y-%m-%d %H} UTC step {self.step}")

    def url(self, layout: OpenDataLayout) -> str:
        return layout.url(self.date, self.step, self.product)


def for_field(spec: FieldSpec, date: dt.datetime, member: int,
              catalogue: Catalogue | None = None) -> FieldRequest:
    """Where one input variable of `member` is published at `date`; refuses what is not."""
    cat = catalogue or load_catalogue()
    field, scale = cat.opendata_field(spec.param, spec.levtype, spec.levelist)
    if spec.constant:
        product, step = cat.constants_product(date)
    else:
        product, step = cat.member_product(date, member), 0
    try:
        cat.check(date, product, field, step)
    except OpenDataError as exc:
        raise OpenDataError(f"checkpoint variable {spec.name}: {exc}") from None
    return FieldRequest(spec.name, date, product, step, field, scale)


def for_member(info: CheckpointInfo, date: dt.datetime, member: int,
               catalogue: Catalogue | None = None) -> list[FieldRequest]:
    """Every input variable of the checkpoint, for one member and one input date."""
    return [for_field(s, date, member, catalogue) for s in info.input_fields]
