import datetime as dt

import eccodes
import numpy as np
import pytest

from ensflow.adapters.checkpoint_info import FieldSpec
from ensflow.adapters.grib_encode import GribEncoder, pack_simple, read_messages
from ensflow.errors import ForecastError

BASE = dt.datetime(2025, 11, 27, 0)


@pytest.fixture(scope="module")
def encoder():
    enc = GribEncoder("O48", BASE, member=7, ensemble_size=50, bits=16)
    yield enc
    enc.close()


def test_messages_decode_with_eccodes(encoder, tmp_path):
    rng = np.random.default_rng(1)
    specs = [FieldSpec("2t", "2t", "sfc"), FieldSpec("z_500", "z", "pl", 500),
             FieldSpec("tp", "tp", "sfc", accumulated=True)]
    values = {s.name: rng.normal(280, 10, 10944) for s in specs}
    values["tp"] = np.abs(values["tp"]) * 1e-4
    path = tmp_path / "out.grib"
    with open(path, "wb") as f:
        for step in (6, 12):
            for s in specs:
                encoder.write(f, s, step, values[s.name])
    msgs = read_messages(path)
    assert [(m["shortName"], m["level"], m["stepRange"]) for m in msgs] == [
        ("2t", 2, "6"), ("z", 500, "6"), ("tp", 0, "0-6"),
        ("2t", 2, "12"), ("z", 500, "12"), ("tp", 0, "0-12")]
    for m, s in zip(msgs[:3], specs, strict=True):
        assert m["number"] == 7 and m["gridType"] == "reduced_gg" and m["numberOfValues"] == 10944
        assert m["dataDate"] == 20251127 and m["dataTime"] == 0
        step = np.ptp(values[s.name]) / 65535
        assert np.abs(m["values"] - values[s.name]).max() <= step  # half of 2**E <= one span/65535


def test_same_as_eccodes_own_packing(encoder):
    spec = FieldSpec("msl", "msl", "sfc")
    v = np.random.default_rng(2).normal(101000, 900, 10944)
    ours = encoder.encode(spec, 24, v)
    h = eccodes.codes_new_from_message(ours)
    try:
        eccodes.codes_set_values(h, v)  # eccodes repacks the same field itself
        theirs = eccodes.codes_get_values(h)
        mine = eccodes.codes_get_values(eccodes.codes_new_from_message(ours))
        assert np.abs(mine - theirs).max() <= np.ptp(v) / 65535
    finally:
        eccodes.codes_release(h)


@pytest.mark.parametrize("bits", [8, 16, 24])
def test_pack_simple_error_bound(bits):
    v = np.random.default_rng(3).normal(-5, 3, 1000)
    ref, e, data = pack_simple(v, bits)
    assert len(data) == 1000 * bits // 8
    raw = np.frombuffer(data, dtype=np.uint8).reshape(1000, bits // 8).astype(np.int64)
    q = np.zeros(1000, dtype=np.int64)
    for k in range(bits // 8):
        q = q * 256 + raw[:, k]
    decoded = ref + q * 2.0**e
    assert np.abs(decoded - v).max() <= 2.0**e / 2 + 1e-12


def test_constant_field():
    ref, e, data = pack_simple(np.full(10, 3.5), 16)
    assert ref == 3.5 and e == 0 and set(data) == {0}


def test_non_finite_values_are_refused(encoder):
    v = np.zeros(10944)
    v[5] = np.nan
    with pytest.raises(ForecastError, match="2t step 6: non-finite"):
        encoder.encode(FieldSpec("2t", "2t", "sfc"), 6, v)


def test_wrong_size_is_refused(encoder):
    with pytest.raises(ForecastError, match="10944"):
        encoder.encode(FieldSpec("2t", "2t", "sfc"), 6, np.zeros(100))
