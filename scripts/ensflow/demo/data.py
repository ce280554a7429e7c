"""A synthetic ECMWF open-data mirror: same object layout and `.index` files, small grid.

Values are smooth, plausible fields (not weather); every product made from them is
labelled synthetic. Lets the whole cycle run with no network.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ensflow.adapters.opendata import OpenDataLayout
from ensflow.adapters.opendata_catalogue import Field, Product
from ensflow.adapters.opendata_catalogue import load as load_catalogue
from ensflow.layout import index_of

log = logging.getLogger(__name__)

# Rough global means and amplitudes, so fields look like their variable.
_CLIMATE: dict[str, tuple[float, float]] = {
    "2t": (278.0, 30.0), "t": (250.0, 25.0), "skt": (280.0, 30.0), "msl": (101_000.0, 1500.0),
    "sp": (98_000.0, 3000.0), "10u": (0.0, 8.0), "10v": (0.0, 6.0), "u": (5.0, 15.0),
    "v": (0.0, 10.0), "q": (0.004, 0.004), "tcw": (25.0, 20.0), "tcwv": (24.0, 20.0),
    "gh": (5500.0, 300.0), "z": (2000.0, 8000.0), "lsm": (0.3, 0.5), "tp": (0.002, 0.003),
    "cp": (0.001, 0.002), "ssr": (5e6, 5e6), "ssrd": (6e6, 6e6), "sf": (2e-4, 3e-4),
    "ro": (5e-4, 8e-4), "tcc": (0.6, 0.3), "2d": (272.0, 25.0), "d": (0.0, 1e-5),
    "w": (0.0, 0.2), "r": (70.0, 20.0), "sot": (282.0, 25.0), "vsw": (0.3, 0.1),
    "slor": (0.01, 0.01), "sdor": (60.0, 60.0),
}
_GH_BY_LEVEL = {1000: 110.0, 925: 760.0, 850: 1450.0, 700: 3000.0, 500: 5500.0, 300: 9000.0,
                250: 10_300.0, 200: 11_800.0, 100: 16_000.0, 50: 20_000.0}
_NONNEGATIVE = {"tp", "cp", "ssr", "ssrd", "sf", "ro", "q", "tcw", "tcwv", "tcc", "lsm", "r", "slor",
                "sdor", "vsw"}
CONSTANT = {"lsm", "z", "slor", "sdor"}  # no member or time dependence
ACCUMULATED = {"tp", "cp", "ssr", "ssrd", "sf", "ro"}


def grid_coordinates(step: float) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Open-data layout: latitude 90 → −90, longitude from 180 (i.e. −180) eastwards."""
    nlat = round(180 / step) + 1
    nlon = round(360 / step)
    lats = np.linspace(90.0, -90.0, nlat)
    lons = (180.0 + step * np.arange(nlon)) % 360.0
    return lats, lons


def synthetic_values(param: str, level: int | None, lats: NDArray[np.float64],
                     lons: NDArray[np.float64], number: int, valid: dt.datetime,
                     step: int) -> NDArray[np.float64]:
    """A deterministic smooth field per (param, level, member, valid time, step)."""
    mean, amp = _CLIMATE.get(param, (1.0, 1.0))
    if param == "gh" and level in _GH_BY_LEVEL:
        mean = _GH_BY_LEVEL[level]
    lat = np.deg2rad(lats)[:, None]
    lon = np.deg2rad(lons)[None, :]
    # an accumulation's rate is fixed over the run, so its total since step 0 never decreases
    when = valid - dt.timedelta(hours=step) if param in ACCUMULATED else valid
    phase = when.timestamp() / 86400.0 * 2 * np.pi / 5.0 + 0.37 * number + 0.11 * (level or 0)
    field = mean + amp * (0.6 * np.cos(lat) ** 2 - 0.3 + 0.25 * np.sin(2 * lon + phase)
                          * np.cos(lat) + 0.1 * np.sin(3 * lat + lon - phase))
    if param in CONSTANT:
        field = mean + amp * (np.sin(3 * lon) * np.cos(2 * lat) > 0.2) * np.cos(lat)
    if param in ACCUMULATED:  # accumulate from step 0: grows with the step
        field = np.abs(field) * (step / 6.0)
    if param in _NONNEGATIVE:
        field = np.clip(field, 0.0, None)
    if param in {"lsm", "tcc"}:
        field = np.clip(field, 0.0, 1.0)
    return field.ravel()


_LEVEL_TYPES = {"pl": "isobaricInhPa", "sol": "soil"}


def _encode(product: Product, field: Field, base: dt.datetime, step: int, step_deg: float,
            values: NDArray[np.float64]) -> bytes:
    """One message as ECMWF's open data carries it: local definition 1 with the MARS class,
    stream and type; ensemble template with `number` only for members (pf, cf)."""
    import eccodes

    lats, lons = grid_coordinates(step_deg)
    accumulated = field.param in ACCUMULATED
    ensemble = product.type in ("cf", "pf")
    template = (11 if accumulated else 1) if ensemble else (8 if accumulated else 0)
    h = eccodes.codes_grib_new_from_samples("GRIB2")
    try:
        for key, value in [
            ("gridType", "regular_ll"), ("Ni", lons.size), ("Nj", lats.size),
            ("latitudeOfFirstGridPointInDegrees", 90.0),
            ("longitudeOfFirstGridPointInDegrees", float(lons[0])),
            ("latitudeOfLastGridPointInDegrees", -90.0),
            ("longitudeOfLastGridPointInDegrees", float(lons[-1])),
            ("iDirectionIncrementInDegrees", step_deg), ("jDirectionIncrementInDegrees", step_deg),
            ("centre", "ecmf"), ("setLocalDefinition", 1), ("localDefinitionNumber", 1),
            ("marsClass", "od"), ("marsStream", product.stream), ("marsType", product.type),
            ("experimentVersionNumber", "0001"),
            ("productDefinitionTemplateNumber", template),
            ("dataDate", int(base.strftime("%Y%m%d"))), ("dataTime", int(base.strftime("%H%M"))),
        ]:
            eccodes.codes_set(h, key, value)
        if field.levtype in _LEVEL_TYPES:
            eccodes.codes_set(h, "typeOfLevel", _LEVEL_TYPES[field.levtype])
            eccodes.codes_set(h, "level", int(field.levelist or 0))
        eccodes.codes_set(h, "shortName", field.param)
        if field.levtype in _LEVEL_TYPES:
            eccodes.codes_set(h, "level", int(field.levelist or 0))
        if ensemble:
            eccodes.codes_set(h, "number", product.index_number)
            eccodes.codes_set(h, "numberOfForecastsInEnsemble", 51)
        if accumulated:
            eccodes.codes_set(h, "startStep", 0)
            eccodes.codes_set(h, "endStep", step)
        else:
            eccodes.codes_set(h, "step", step)
        eccodes.codes_set(h, "packingType", "grid_ccsds")
        eccodes.codes_set(h, "bitsPerValue", 16)
        eccodes.codes_set_values(h, values)
        return eccodes.codes_get_message(h)
    finally:
        eccodes.codes_release(h)


ObjectContents = dict[Product, list[Field]]


def write_object(layout: OpenDataLayout, base: dt.datetime, step: int, contents: ObjectContents,
                 step_deg: float) -> Path:
    """One open-data object and its `.index` (written by ecmwf-opendata's own indexer).

    Every message is first checked against the catalogue: the mirror holds nothing that
    ECMWF does not publish, under ECMWF's names and streams.
    """
    from ecmwf.opendata.grib import grib_index

    catalogue = load_catalogue()
    products = sorted(contents, key=lambda p: (p.type != "cf", p.index_number))
    streams = {p.stream for p in products}
    if len(streams) != 1:
        raise ValueError(f"one object holds one stream, got {sorted(streams)}")
    url = layout.url(base, step, products[0])
    path = Path(url.removeprefix("file://"))
    path.parent.mkdir(parents=True, exist_ok=True)
    lats, lons = grid_coordinates(step_deg)
    valid = base + dt.timedelta(hours=step)
    tmp = path.with_name(path.name + ".part")
    with open(tmp, "wb") as f:
        for product in products:
            for field in contents[product]:
                catalogue.check(base, product, field, step)
                values = synthetic_values(field.param, field.levelist, lats, lons,
                                          product.index_number, valid, step)
                f.write(_encode(product, field, base, step, step_deg, values))
    entries = grib_index(str(tmp))
    index = Path(index_of(str(path)))
    index.write_text("".join(json.dumps(e) + "\n" for e in entries))
    tmp.replace(path)
    return path


def write_mirror(layout: OpenDataLayout,
                 objects: dict[tuple[dt.datetime, int, str], ObjectContents],
                 step_deg: float) -> list[Path]:
    """Open-data objects keyed by (base time, step, stream) with their products' fields."""
    paths = []
    for (base, step, _), contents in sorted(objects.items(), key=lambda kv: (kv[0][0], kv[0][1], kv[0][2])):
        paths.append(write_object(layout, base, step, contents, step_deg))
        log.info("wrote %s (%d messages)", paths[-1], sum(len(v) for v in contents.values()))
    return paths


def add(objects: dict[tuple[dt.datetime, int, str], ObjectContents], base: dt.datetime, step: int,
        product: Product, field: Field) -> None:
    """Put a field into the mirror plan once."""
    listed = objects.setdefault((base, step, product.stream), {}).setdefault(product, [])
    if field not in listed:
        listed.append(field)
