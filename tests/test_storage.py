"""The storage layer against a directory, a GCS emulator and an S3 server, all on loopback."""

from __future__ import annotations

import base64
import json
import os

import boto3
import google_crc32c
import pytest
from conftest import FaultProxy

from ensflow.adapters import storage
from ensflow.errors import StorageError


def crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


# ------------------------------------------------------------------ file://


def test_file_bucket_round_trip(tmp_path):
    src = tmp_path / "a.bin"
    src.write_bytes(os.urandom(100_000))
    url = f"file://{tmp_path}/bucket/x/a.bin"
    first = storage.put_file(src, url)
    assert not first.skipped and first.info.crc32c == crc(src.read_bytes())
    again = storage.put_file(src, url)
    assert again.skipped
    assert storage.read_ranges(url, [(10, 5), (0, 3)]) == [src.read_bytes()[10:15],
                                                           src.read_bytes()[:3]]
    got = storage.get_file(url, tmp_path / "back.bin")
    assert got.crc32c == first.info.crc32c
    assert [o.size for o in storage.list_prefix(f"file://{tmp_path}/bucket/x")] == [100_000]
    storage.delete(url)
    assert storage.stat(url) is None


def test_file_bucket_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_bytes(b"hello")
    storage.put_file(tmp_path / "f", "file://bucket/c/f")
    assert (tmp_path / "bucket/c/f").read_bytes() == b"hello"


def test_missing_object_is_named(tmp_path):
    with pytest.raises(StorageError, match="nope"):
        storage.read_bytes(f"file://{tmp_path}/nope")


def test_bad_scheme():
    with pytest.raises(StorageError, match="ftp://x"):
        storage.stat("ftp://x/y")


# ------------------------------------------------------------------ gs:// (emulator)


def test_gcs_parallel_upload_checksums_and_skip(gcs_env, tmp_path):
    files = []
    for i in range(5):
        p = tmp_path / f"f{i}.grib"
        p.write_bytes(os.urandom(300_000 + i))
        files.append(p)
    big = tmp_path / "big.grib"
    big.write_bytes(os.urandom(3 * 1024 * 1024 + 17))  # several 1 MiB resumable chunks
    files.append(big)
    pairs = [(p, f"gs://ensflow-test/t1/forecasts/{p.name}") for p in files]
    seen = []
    out = storage.put_files(pairs, parallel=3, progress=seen.append)
    assert len(seen) == len(files)
    assert [r.info.crc32c for r in out] == [crc(p.read_bytes()) for p in files]
    assert not any(r.skipped for r in out)
    # the same bytes again: nothing is sent
    assert all(r.skipped for r in storage.put_files(pairs))
    # a changed file is uploaded again
    files[0].write_bytes(b"changed")
    assert not storage.put_file(files[0], pairs[0][1]).skipped
    listed = storage.list_prefix("gs://ensflow-test/t1/forecasts/")
    assert len(listed) == len(files)
    assert storage.read_ranges(pairs[1][1], [(5, 10)]) == [files[1].read_bytes()[5:15]]
    back = storage.get_file(pairs[-1][1], tmp_path / "back.grib")
    assert back.crc32c == crc(big.read_bytes())


def test_with_retries_retries_transient_then_gives_up():
    calls = []

    class Throttled(Exception):
        code = 429

    def flaky():
        calls.append(1)
        if len(calls) < 3:
            raise Throttled("slow down")
        return "ok"

    assert storage.with_retries(flaky, "x", retries=4, base_delay=0.01) == "ok"
    assert len(calls) == 3

    class Denied(Exception):
        code = 403

    def denied():
        calls.append(1)
        raise Denied("no")

    calls.clear()
    with pytest.raises(Denied):
        storage.with_retries(denied, "x", retries=4, base_delay=0.01)
    assert len(calls) == 1


def test_gcs_upload_survives_server_errors(gcs_emulator, tmp_path, monkeypatch):
    with FaultProxy(gcs_emulator, fail_first=3) as proxy:
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        storage.configure(storage.StorageOptions(retries=6))
        try:
            src = tmp_path / "f.grib"
            src.write_bytes(os.urandom(50_000))
            out = storage.put_file(src, "gs://ensflow-test/flaky/f.grib")
            assert out.info.crc32c == crc(src.read_bytes())
            assert proxy.seen > 3 and proxy.failed == 3
        finally:
            storage.configure(storage.StorageOptions())


def test_gcs_credentials_file_is_never_printed(tmp_path, monkeypatch, caplog):
    key = tmp_path / "sa.json"
    key.write_text(json.dumps({"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"}))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    storage.configure(storage.StorageOptions(gcs_credentials_file=str(key), gcs_project="p"))
    try:
        with pytest.raises(Exception) as err:
            storage.stat("gs://b/x")
        assert "SECRET-KEY-MATERIAL" not in str(err.value)
        assert "SECRET-KEY-MATERIAL" not in caplog.text
    finally:
        storage.configure(storage.StorageOptions())


# ------------------------------------------------------------------ s3:// (moto)


@pytest.fixture(scope="module")
def public_bucket(s3_server):
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="eu-central-1",
                      aws_access_key_id="test", aws_secret_access_key="test")
    s3.create_bucket(Bucket="opendata",
                     CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    s3.put_bucket_policy(Bucket="opendata", Policy=json.dumps({
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": "*", "Action": ["s3:GetObject", "s3:ListBucket"],
                       "Resource": ["arn:aws:s3:::opendata", "arn:aws:s3:::opendata/*"]}],
    }))
    data = os.urandom(200_000)
    s3.put_object(Bucket="opendata", Key="a/b.grib2", Body=data)
    return data


def test_s3_anonymous_byte_ranges(s3_server, public_bucket, monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k, raising=False)
    storage.configure(storage.StorageOptions(s3_endpoint_url=s3_server))
    try:
        url = "s3://opendata/a/b.grib2"
        assert storage.stat(url).size == len(public_bucket)
        parts = storage.read_ranges(url, [(0, 100), (150_000, 50_000), (100, 10)])
        assert parts == [public_bucket[:100], public_bucket[150_000:], public_bucket[100:110]]
        assert storage.read_bytes(url) == public_bucket
        assert storage.stat("s3://opendata/a/none") is None
        with pytest.raises(StorageError, match="none"):
            storage.read_bytes("s3://opendata/a/none")
    finally:
        storage.configure(storage.StorageOptions())
