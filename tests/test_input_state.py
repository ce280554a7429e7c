"""Input states from a synthetic open-data mirror, checked against eccodes + mir directly."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import replace
from pathlib import Path

import eccodes
import mir
import numpy as np
import pytest

from ensflow import checkpoint_info, demo_data, input_state
from ensflow.demo_model import save_demo_checkpoint
from ensflow.errors import InputStateError, OpenDataError
from ensflow.naming import index_of, opendata_object

CYCLE = dt.datetime(2025, 11, 27, 0)


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("od")
    ckpt = save_demo_checkpoint(root / "demo.ckpt")
    info = checkpoint_info.read(str(ckpt))
    url = f"file://{root}/opendata"
    params = demo_data.opendata_params(info.input_fields)
    demo_data.write_mirror(url, {(d, 0): params for d in input_state.input_dates(CYCLE)}, 2, 4.0)
    return info, url


def reference(url: str, param: str, level: int | None, number: int, grid: str) -> np.ndarray:
    """eccodes finds the message by its own keys; mir regrids; eccodes decodes."""
    path = url.removeprefix("file://")
    with open(path, "rb") as f:
        while (h := eccodes.codes_grib_new_from_file(f)) is not None:
            try:
                keys = (eccodes.codes_get(h, "shortName"), eccodes.codes_get(h, "level"),
                        eccodes.codes_get(h, "number"))
                if keys == (param, level or keys[1], number):
                    msg = eccodes.codes_get_message(h)
                    break
            finally:
                eccodes.codes_release(h)
    out = bytearray(8 * 1024 * 1024)
    sink = mir.GribMemoryOutput(out)
    mir.Job(grid=grid, interpolation="linear").execute(mir.GribMemoryInput(msg), sink)
    h = eccodes.codes_new_from_message(bytes(out[: len(sink)]))
    try:
        return eccodes.codes_get_values(h)
    finally:
        eccodes.codes_release(h)


def test_state_matches_eccodes_and_mir(mirror):
    info, url = mirror
    state = input_state.build(info, CYCLE, 2, url)
    assert state["date"] == CYCLE
    assert set(state["fields"]) == {f.name for f in info.input_fields}
    for i, date in enumerate(input_state.input_dates(CYCLE)):
        src = opendata_object(url, date, 0)
        for name, param, level, scale in [("2t", "2t", None, 1.0), ("msl", "msl", None, 1.0),
                                          ("z_500", "gh", 500, input_state.GRAVITY)]:
            ref = reference(src, param, level, 2, info.grid) * scale
            got = state["fields"][name][i]
            assert got.shape == (info.npoints,)
            np.testing.assert_allclose(got, ref.astype(np.float32), rtol=1e-6)


def test_members_differ_and_dates_differ(mirror):
    info, url = mirror
    a = input_state.build(info, CYCLE, 1, url)["fields"]["2t"]
    b = input_state.build(info, CYCLE, 2, url)["fields"]["2t"]
    assert not np.allclose(a, b)
    assert not np.allclose(a[0], a[1])


def test_missing_member_is_named(mirror):
    info, url = mirror
    with pytest.raises(OpenDataError, match="member 9"):
        input_state.build(info, CYCLE, 9, url)


def test_missing_field_in_index_is_listed(mirror, tmp_path):
    info, url = mirror
    extra = replace(info, input_fields=(*info.input_fields,
                                        checkpoint_info.FieldSpec("skt", "skt", "sfc")))
    with pytest.raises(OpenDataError, match=r"missing from the index: skt \(sfc\) member 1"):
        input_state.build(extra, CYCLE, 1, url)


def test_index_format_is_ecmwf_json_lines(mirror):
    _, url = mirror
    idx = Path(index_of(opendata_object(url, CYCLE, 0)).removeprefix("file://"))
    first = json.loads(idx.read_text().splitlines()[0])
    assert {"param", "levtype", "type", "step", "_offset", "_length"} <= set(first)
    assert first["type"] == "cf" and "number" not in first


def good_state(info):
    return {"date": CYCLE, "fields": {f.name: np.ones((2, info.npoints), np.float32)
                                      for f in info.input_fields}}


@pytest.mark.parametrize("damage,message", [
    (lambda s: s["fields"].pop("2t"), "missing field(s) 2t"),
    (lambda s: s["fields"].__setitem__("msl", np.ones((2, 7))), "msl has shape (2, 7)"),
    (lambda s: s["fields"]["sp"].__setitem__((1, 3), np.nan), "sp has 1 non-finite"),
    (lambda s: s.__setitem__("date", "2025-11-27"), "'date' is str"),
    (lambda s: s.pop("fields"), "must be a dict"),
])
def test_check_names_member_and_field(mirror, damage, message):
    info, _ = mirror
    state = good_state(info)
    damage(state)
    with pytest.raises(InputStateError) as err:
        input_state.check(state, info, "member 004")
    assert "member 004" in str(err.value) and message in str(err.value)
