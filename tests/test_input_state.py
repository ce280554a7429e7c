"""Input states from a synthetic open-data mirror, checked against eccodes + mir directly."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import eccodes
import mir
import numpy as np
import pytest

from ensflow.adapters import checkpoint_info, opendata, opendata_requests
from ensflow.adapters.opendata import OpenDataLayout
from ensflow.adapters.opendata_catalogue import load as load_catalogue
from ensflow.adapters.storage import Storage
from ensflow.config import load
from ensflow.demo import data as demo_data
from ensflow.demo import world as demo
from ensflow.demo.model import save_demo_checkpoint
from ensflow.errors import InputStateError, OpenDataError
from ensflow.layout import index_of, opendata_object
from ensflow.science import input_state

REPO = Path(__file__).resolve().parents[1]

CYCLE = dt.datetime(2025, 11, 27, 0)
GRAVITY = 9.80665
FILES = Storage()  # the mirror is file://


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """The demo's mirror for two perturbed members, written from the catalogue."""
    root = tmp_path_factory.mktemp("od")
    ckpt = save_demo_checkpoint(root / "demo.ckpt")
    info = checkpoint_info.read(str(ckpt))
    settings = load(REPO / "config" / "config.yaml", {
        "opendata": {"root": f"file://{root}/opendata"}, "cgan": {"enabled": False},
        "demo": {"perturbed_members": 2}})
    layout = OpenDataLayout.from_settings(settings.opendata)
    demo_data.write_mirror(layout, demo.mirror_objects(settings, info), 4.0)
    return info, layout


def reference(url: str, param: str, level: int | None, number: int, grid: str
              ) -> tuple[np.ndarray, float]:
    """eccodes finds the message by its own keys; mir regrids; eccodes decodes."""
    path = url.removeprefix("file://")
    msg = None
    with open(path, "rb") as f:
        while (h := eccodes.codes_grib_new_from_file(f)) is not None:
            try:
                keys = (eccodes.codes_get(h, "shortName"), eccodes.codes_get(h, "level"),
                        eccodes.codes_get(h, "number") if eccodes.codes_is_defined(h, "number") else 0)
                if keys == (param, level or keys[1], number):
                    msg = eccodes.codes_get_message(h)
                    break
            finally:
                eccodes.codes_release(h)
    assert msg is not None, (url, param, level, number)
    out = bytearray(8 * 1024 * 1024)
    sink = mir.GribMemoryOutput(out)
    mir.Job(grid=grid, interpolation="linear").execute(mir.GribMemoryInput(msg), sink)
    h = eccodes.codes_new_from_message(bytes(out[: len(sink)]))
    try:
        values = eccodes.codes_get_values(h)
        return values, float(np.ptp(values)) / 2 ** eccodes.codes_get(h, "bitsPerValue")
    finally:
        eccodes.codes_release(h)


def test_state_matches_eccodes_and_mir(mirror):
    """Each variable from where ECMWF publishes it: soil temperature as sot on soil levels,
    z on pressure levels as gh times g, constants from the HRES stream (scda at 18 UTC
    before IFS 50r1, oper at 00 UTC) with no member number."""
    info, layout = mirror
    state = input_state.build(FILES, info, CYCLE, 2, layout)
    assert state["date"] == CYCLE
    assert set(state["fields"]) == {f.name for f in info.input_fields}
    assert len(info.input_fields) == 92  # as today's operational pickles
    for i, date in enumerate(input_state.input_dates(CYCLE)):
        enfo = opendata_object(layout.root, date, 0, stream="enfo", file_type="ef")
        hres = opendata_object(layout.root, date, 0, stream="scda" if date.hour == 18 else "oper",
                               file_type="fc")
        for name, src, param, level, number, scale in [
                ("2t", enfo, "2t", None, 2, 1.0), ("msl", enfo, "msl", None, 2, 1.0),
                ("z_500", enfo, "gh", 500, 2, GRAVITY), ("stl1", enfo, "sot", 1, 2, 1.0),
                ("stl2", enfo, "sot", 2, 2, 1.0), ("lsm", hres, "lsm", None, 0, 1.0),
                ("z", hres, "z", None, 0, 1.0), ("sdor", hres, "sdor", None, 0, 1.0)]:
            ref, packing = reference(src, param, level, number, info.grid)
            got = state["fields"][name][i]
            assert got.shape == (info.npoints,)
            # mir's weights applied to the decoded values: mir's own GRIB output, within
            # the packing of that output (which ensflow no longer writes and decodes)
            np.testing.assert_allclose(got, (ref * scale).astype(np.float32), rtol=1e-6,
                                       atol=packing * scale, err_msg=name)


def test_members_differ_and_dates_differ(mirror):
    info, layout = mirror
    a = input_state.build(FILES, info, CYCLE, 1, layout)["fields"]["2t"]
    b = input_state.build(FILES, info, CYCLE, 2, layout)["fields"]["2t"]
    assert not np.allclose(a, b)
    assert not np.allclose(a[0], a[1])


def test_missing_member_is_named(mirror):
    info, layout = mirror
    with pytest.raises(OpenDataError, match="member 9"):
        input_state.build(FILES, info, CYCLE, 9, layout)


def copy_with_enfo_index(layout: OpenDataLayout, dest: Path) -> tuple[OpenDataLayout, Path, list[dict]]:
    """A copy of the mirror, the path of its enfo step-0 index and that index's entries."""
    shutil.copytree(layout.root.removeprefix("file://"), dest)
    idx = Path(index_of(opendata_object(f"file://{dest}", CYCLE, 0, stream="enfo",
                                        file_type="ef")).removeprefix("file://"))
    return OpenDataLayout(f"file://{dest}"), idx, [json.loads(ln) for ln in idx.read_text().splitlines()]


def test_missing_field_names_the_request_tried(mirror, tmp_path):
    """A field open data does not list is named with where it was looked for."""
    info, layout = mirror
    copy, idx, entries = copy_with_enfo_index(layout, tmp_path / "od")
    kept = [e for e in entries if not (e["param"] == "sot" and e.get("levelist") == "2")]
    idx.write_text("".join(json.dumps(e) + "\n" for e in kept))
    with pytest.raises(OpenDataError, match=r"stl2 <- sot/2 \(sol\) from enfo pf number 1"):
        input_state.build(FILES, info, CYCLE, 1, copy)


def test_a_message_that_is_not_the_field_its_index_promised_is_refused(mirror, tmp_path):
    """Swapped `_offset`s of 2t and msl: the member fails naming both, no state is made."""
    info, layout = mirror
    copy, idx, entries = copy_with_enfo_index(layout, tmp_path / "od")
    t2, msl = (next(e for e in entries if e["param"] == p and e.get("number") == "1")
               for p in ("2t", "msl"))
    for k in ("_offset", "_length"):
        t2[k], msl[k] = msl[k], t2[k]
    idx.write_text("".join(json.dumps(e) + "\n" for e in entries))
    with pytest.raises(InputStateError, match=r"the message is msl.*promised 2t"):
        input_state.build(FILES, info, CYCLE, 1, copy)


def test_implausible_values_are_refused(mirror):
    info, _ = mirror
    cat = load_catalogue()
    req = next(r for r in opendata_requests.for_member(info, CYCLE, 1, cat) if r.variable == "2t")
    msg = opendata.Message("x.grib2", 0, 1, "2t", "sfc", None, 1, "0")
    blob = demo_data._encode(req.product, req.field, CYCLE, 0, 4.0,
                             np.full(91 * 90, 101_000.0))  # a pressure where 2t should be
    with pytest.raises(InputStateError, match=r"outside the plausible 160\.\.350 for 2t"):
        input_state.check_source(req, msg, blob, np.full(10, 101_000.0), cat)


def test_index_format_is_ecmwf_json_lines(mirror):
    """Keys as real index lines have them; cf lines carry no number; oper/scda no number."""
    _, layout = mirror
    for stream, ftype in (("enfo", "ef"), ("oper", "fc")):
        idx = Path(index_of(opendata_object(layout.root, CYCLE, 0, stream=stream,
                                            file_type=ftype)).removeprefix("file://"))
        lines = [json.loads(ln) for ln in idx.read_text().splitlines()]
        keys = set(load_catalogue().index_keys)
        assert all(set(e) <= keys for e in lines)
        assert all(e["stream"] == stream and e["class"] == "od" for e in lines)
        if stream == "enfo":
            assert lines[0]["type"] == "cf" and "number" not in lines[0]
        else:
            assert {e["type"] for e in lines} == {"fc"} and not any("number" in e for e in lines)


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
