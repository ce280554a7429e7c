"""The storage layer against a directory, a GCS emulator and an S3 server, all on loopback.

Retries are the libraries' own: the fault-injecting proxy answers 5xx, and its request
count shows that google-cloud-storage, obstore and Icechunk asked again (and, with
`retries: 0`, that nobody did).
"""

from __future__ import annotations

import base64
import dataclasses
import json
import multiprocessing
import os
import pickle
import re
import time
from concurrent.futures import ProcessPoolExecutor

import boto3
import google_crc32c
import icechunk
import numpy as np
import pytest
import zarr
from conftest import FaultProxy

from ensflow.adapters import ensemble_store
from ensflow.adapters.storage import MiB, Storage
from ensflow.errors import StorageError


def crc(data: bytes) -> str:
    return base64.b64encode(google_crc32c.Checksum(data).digest()).decode()


# ------------------------------------------------------------------ file://


def test_file_bucket_round_trip(tmp_path):
    storage = Storage()
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


def test_a_remembered_checksum_holds_only_for_the_bytes_it_was_made_from(tmp_path):
    """The crc32c kept with a file (by its writer, or a file:// bucket's copy) saves a read;
    once the file changes it is computed again, and an upload compares it with the copy's."""
    from ensflow.adapters.storage import crc32c_file, remember_crc32c, remembered_crc32c

    src = tmp_path / "w.grib"
    src.write_bytes(b"a" * 1000)
    remember_crc32c(src, crc(b"a" * 1000))
    assert remembered_crc32c(src) == crc32c_file(src) == crc(b"a" * 1000)
    time.sleep(0.02)
    src.write_bytes(b"b" * 1000)  # same size, same inode, later mtime
    assert remembered_crc32c(src) is None and crc32c_file(src) == crc(b"b" * 1000)

    storage = Storage()
    url = f"file://{tmp_path}/bucket/w.grib"
    storage.put_file(src, url)
    obj = tmp_path / "bucket/w.grib"
    assert remembered_crc32c(obj) == crc(b"b" * 1000)  # as a bucket's object metadata
    time.sleep(0.02)
    obj.write_bytes(b"c" * 1000)  # changed in the bucket: not skipped
    assert not storage.put_file(src, url).skipped and obj.read_bytes() == b"b" * 1000

    remember_crc32c(src, crc(b"z" * 1000))  # a wrong checksum kept with the file is caught
    with pytest.raises(StorageError, match="crc32c after upload"):
        storage.put_file(src, f"file://{tmp_path}/bucket/other.grib")


def test_file_bucket_relative_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "f").write_bytes(b"hello")
    Storage().put_file(tmp_path / "f", "file://bucket/c/f")
    assert (tmp_path / "bucket/c/f").read_bytes() == b"hello"


def test_missing_object_is_named(tmp_path):
    with pytest.raises(StorageError, match="nope"):
        Storage().read_bytes(f"file://{tmp_path}/nope")


def test_bad_scheme():
    with pytest.raises(StorageError, match="ftp://x"):
        Storage().stat("ftp://x/y")


# ------------------------------------------------------------------ gs:// (emulator)


def test_gcs_parallel_upload_checksums_and_skip(gcs_storage, tmp_path):
    storage = gcs_storage
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


def exact_gcs_counts(monkeypatch, host: str) -> None:
    """Point the client at `host`, without google-cloud-storage's background fetch of bucket
    metadata for tracing (a request of its own that would blur the counts)."""
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", host)
    monkeypatch.setenv("DISABLE_GCS_PYTHON_CLIENT_OTEL_BUCKET_METADATA", "true")


def gcs_round_trip(storage: Storage, src, url: str, back) -> tuple[str, str, list[bytes]]:
    """Upload (resumable, 1 MiB chunks), download, read two ranges."""
    sent = storage.put_file(src, url)
    got = storage.get_file(url, back)
    parts = storage.read_ranges(url, [(5, 10), (2 * MiB, 100)])
    return sent.info.crc32c, got.crc32c, parts


def test_gcs_transfers_are_retried_by_the_library(gcs_emulator, tmp_path, monkeypatch):
    """Every third request answered 500: the same transfers succeed, and the proxy saw
    exactly the clean run's requests plus one repeat of each failed one."""
    src = tmp_path / "f.grib"
    src.write_bytes(os.urandom(3 * MiB + 17))
    want = crc(src.read_bytes())
    data = src.read_bytes()
    counts = {}
    for fail_every in (0, 3):
        with FaultProxy(gcs_emulator, fail_every=fail_every) as proxy:
            exact_gcs_counts(monkeypatch, proxy.url)
            storage = Storage(chunk_mb=1, retries=6)
            sent, got, parts = gcs_round_trip(storage, src, f"gs://ensflow-test/flaky{fail_every}/f.grib",
                                              tmp_path / f"back{fail_every}.grib")
        assert sent == got == want
        assert parts == [data[5:15], data[2 * MiB:2 * MiB + 100]]
        counts[fail_every] = (proxy.seen, proxy.failed)
    (clean, none_failed), (faulty, failed) = counts[0], counts[3]
    assert none_failed == 0 and failed >= 3
    assert faulty == clean + failed


def test_gcs_server_errors_at_first_are_retried(gcs_emulator, tmp_path, monkeypatch):
    with FaultProxy(gcs_emulator, fail_first=3) as proxy:
        exact_gcs_counts(monkeypatch, proxy.url)
        src = tmp_path / "f.grib"
        src.write_bytes(os.urandom(50_000))
        out = Storage(retries=6).put_file(src, "gs://ensflow-test/flaky/f.grib")
    assert out.info.crc32c == crc(src.read_bytes())
    assert proxy.failed == 3 and proxy.seen > 3  # the first request, asked four times


def test_without_retries_a_server_error_fails_naming_the_url(gcs_emulator, s3_server, public_bucket,
                                                              tmp_path, monkeypatch):
    anonymous(monkeypatch)
    src = tmp_path / "f.grib"
    src.write_bytes(os.urandom(50_000))
    with FaultProxy(gcs_emulator, fail_first=1) as proxy:
        exact_gcs_counts(monkeypatch, proxy.url)
        with pytest.raises(StorageError, match=re.escape("gs://ensflow-test/no-retry/f.grib")):
            Storage(retries=0).put_file(src, "gs://ensflow-test/no-retry/f.grib")
    assert proxy.seen == 1
    url = "s3://opendata/a/b.grib2"
    with (FaultProxy(s3_server, fail_first=1) as proxy,
          pytest.raises(StorageError, match=re.escape(url))):
        Storage(s3_endpoint_url=proxy.url, retries=0).read_ranges(url, [(0, 100)])
    assert proxy.seen == 1


def test_gcs_credentials_file_is_never_printed(tmp_path, monkeypatch, caplog):
    key = tmp_path / "sa.json"
    key.write_text(json.dumps({"type": "service_account", "private_key": "SECRET-KEY-MATERIAL"}))
    monkeypatch.delenv("STORAGE_EMULATOR_HOST", raising=False)
    with pytest.raises(StorageError) as err:
        Storage(gcs_credentials_file=str(key), gcs_project="p").stat("gs://b/x")
    assert "gs://b/x" in str(err.value)
    assert "SECRET-KEY-MATERIAL" not in str(err.value)
    assert "SECRET-KEY-MATERIAL" not in caplog.text


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


def anonymous(monkeypatch):
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(k, raising=False)


def test_s3_anonymous_byte_ranges(s3_server, public_bucket, monkeypatch):
    anonymous(monkeypatch)
    storage = Storage(s3_endpoint_url=s3_server)
    url = "s3://opendata/a/b.grib2"
    assert storage.stat(url).size == len(public_bucket)
    parts = storage.read_ranges(url, [(0, 100), (150_000, 50_000), (100, 10)])
    assert parts == [public_bucket[:100], public_bucket[150_000:], public_bucket[100:110]]
    assert storage.read_bytes(url) == public_bucket
    assert storage.stat("s3://opendata/a/none") is None
    with pytest.raises(StorageError, match="s3://opendata/a/none: no such object"):
        storage.read_bytes("s3://opendata/a/none")


def test_s3_range_reads_are_retried_by_the_library(s3_server, public_bucket, monkeypatch):
    anonymous(monkeypatch)
    url = "s3://opendata/a/b.grib2"
    counts = {}
    for fail_first in (0, 2):
        with FaultProxy(s3_server, fail_first=fail_first) as proxy:
            storage = Storage(s3_endpoint_url=proxy.url, retries=6)
            parts = storage.read_ranges(url, [(0, 100), (150_000, 50_000)])
            assert storage.stat(url).size == len(public_bucket)
        assert parts == [public_bucket[:100], public_bucket[150_000:]]
        counts[fail_first] = (proxy.seen, proxy.ranged, proxy.failed)
    (clean, clean_ranged, _), (faulty, faulty_ranged, failed) = counts[0], counts[2]
    # the two failed requests were range GETs, each asked again once
    assert failed == 2
    assert (faulty, faulty_ranged) == (clean + 2, clean_ranged + 2)


def test_range_answered_with_the_whole_object_is_refused_at_once(s3_server, public_bucket, monkeypatch):
    anonymous(monkeypatch)
    with FaultProxy(s3_server, ignore_range=True) as proxy:
        storage = Storage(s3_endpoint_url=proxy.url, retries=6)
        with pytest.raises(StorageError, match=r"s3://opendata/a/b.grib2: the server answered a "
                                               r"byte-range request with the whole object"):
            storage.read_ranges("s3://opendata/a/b.grib2", [(0, 100)])
    assert proxy.seen == 1, "asking again would not help"


# ------------------------------------------------------------------ one object, many processes


def in_worker(storage: Storage) -> tuple[int, bytes, list[bytes]]:
    """Runs in a spawned process: the Storage arrives with its settings and connects here."""
    fresh = len(storage._backends)
    return (fresh, storage.read_bytes("gs://ensflow-test/worker/w.bin"),
            storage.read_ranges("s3://opendata/a/b.grib2", [(0, 10), (150_000, 5)]))


def test_storage_pickles_with_live_clients_and_works_in_a_worker(gcs_storage, s3_server, public_bucket,
                                                                 tmp_path, monkeypatch):
    anonymous(monkeypatch)
    storage = dataclasses.replace(gcs_storage, s3_endpoint_url=s3_server, retries=2)
    src = tmp_path / "w.bin"
    src.write_bytes(os.urandom(10_000))
    storage.put_file(src, "gs://ensflow-test/worker/w.bin")
    assert storage.stat("s3://opendata/a/b.grib2").size == len(public_bucket)
    assert sorted(scheme for scheme, _ in storage._backends) == ["gs", "s3"]  # live clients

    copy = pickle.loads(pickle.dumps(storage))
    assert copy == storage and copy.retries == 2 and copy._backends == {}
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        fresh, data, parts = pool.submit(in_worker, storage).result(timeout=120)
    assert fresh == 0
    assert data == src.read_bytes()
    assert parts == [public_bucket[:10], public_bucket[150_000:150_005]]
    # still usable here after being pickled
    assert storage.read_bytes("gs://ensflow-test/worker/w.bin") == src.read_bytes()


# ------------------------------------------------------------------ Icechunk on s3:// (moto)


def test_icechunk_repository_on_s3_from_the_same_storage(s3_server, monkeypatch):
    """open_repo reaches the S3 server as the buckets do, with Icechunk's own retries."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    boto3.client("s3", endpoint_url=s3_server, region_name="eu-central-1").create_bucket(
        Bucket="stores", CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    url = "s3://stores/archive.icechunk"
    with FaultProxy(s3_server, fail_every=4) as proxy:
        storage = Storage(s3_endpoint_url=proxy.url, retries=6)
        repo = ensemble_store.open_repo(url, storage)
        session = repo.writable_session("main")
        root = zarr.open_group(store=session.store, mode="a")
        root.create_array("x", shape=(4,), dtype="int32")[:] = [1, 2, 3, 4]
        session.commit("first")
        again = ensemble_store.open_repo(url, storage, create=False)
        values = zarr.open_group(store=again.readonly_session("main").store, mode="r")["x"][:]
    np.testing.assert_array_equal(values, [1, 2, 3, 4])
    assert proxy.failed > 0  # and Icechunk asked again each time
    assert storage.icechunk_config().storage.retries.max_tries == 7

    # opening reads three objects at once; each answered 503 first: asked again with
    # retries, final without
    with FaultProxy(s3_server, fail_first=3) as proxy:
        ensemble_store.open_repo(url, Storage(s3_endpoint_url=proxy.url, retries=6), create=False)
    assert proxy.failed == 3 and proxy.seen > 3
    with FaultProxy(s3_server, fail_first=3) as proxy, pytest.raises(icechunk.IcechunkError):
        ensemble_store.open_repo(url, Storage(s3_endpoint_url=proxy.url, retries=0), create=False)
    assert proxy.seen <= 3
