"""The ensemble-store protocol on a real Icechunk repository: forks from other processes,
atomic publish, idempotence, refusal when main moved, and what readers of main see."""

from __future__ import annotations

import multiprocessing
import os
import pickle
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import zarr

from ensflow.adapters import ensemble_store as es
from ensflow.adapters.storage import Storage
from ensflow.errors import UnsafePickleError

MEMBERS, STEPS, NY, NX = 6, 3, 4, 5
STORAGE = Storage(retries=2)  # file:// stores; handed to the worker processes as well


def schema() -> es.StoreSchema:
    return es.StoreSchema(
        coords={"member": np.arange(MEMBERS), "step": np.arange(STEPS),
                "latitude": np.linspace(1, 0, NY), "longitude": np.linspace(0, 1, NX)},
        coord_attrs={},
        arrays=(es.ArraySpec("tp", ("member", "step", "latitude", "longitude"),
                             (MEMBERS, STEPS, NY, NX), {"units": "m"}),),
    )


def fill(cycle_value: int, member: int) -> np.ndarray:
    return np.full((STEPS, NY, NX), cycle_value * 100 + member, np.float32)


def write_batch(args: tuple[str, Storage, str, list[int], str]) -> str:
    """Runs in another process: open the repo, fork, write, save the fork file."""
    url, storage, setup_path, members, fork_path = args
    repo = es.open_repo(url, storage)
    record = es.SetupRecord.load(setup_path)

    def write(root, t):
        for m in members:
            root["tp"][t, m] = fill(record.time_value, m)
        return {"tp": list(members)}

    es.write_fork(repo, record, write, fork_path)
    return fork_path


def run_cycle(tmp: Path, url: str, cycle: str, value: int, batches=((0, 1), (2, 3), (4, 5))):
    repo = es.open_repo(url, STORAGE)
    record = es.setup(repo, schema(), cycle, value, tmp / f"{cycle}-setup.json")
    jobs = [(url, STORAGE, str(tmp / f"{cycle}-setup.json"), list(b),
             str(tmp / f"{cycle}-fork{i}.pkl"))
            for i, b in enumerate(batches)]
    # forkserver: the parent already runs Icechunk's threads, which fork() would not carry
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("forkserver")) as pool:
        forks = list(pool.map(write_batch, jobs))
    return repo, record, forks


def main_tp(repo) -> np.ndarray:
    root = zarr.open_group(store=repo.readonly_session("main").store, mode="r")
    return root["tp"][:]


def test_forks_from_other_processes_publish_in_one_commit(tmp_path):
    url = f"file://{tmp_path}/store"
    repo, record, forks = run_cycle(tmp_path, url, "20251127_0000", 1)
    before = repo.lookup_branch("main")
    assert main_tp(repo).shape[0] == 0, "main must not see the cycle before publish"
    result = es.publish(repo, record, forks)
    assert repo.lookup_branch("main") == result["snapshot"] != before
    assert repo.lookup_tag("cycle-20251127_0000") == result["snapshot"]
    assert "run/20251127_0000" not in repo.list_branches()
    data = main_tp(repo)
    assert data.shape == (1, MEMBERS, STEPS, NY, NX)
    for m in range(MEMBERS):
        np.testing.assert_array_equal(data[0, m], fill(1, m))
    commits = [s.message for s in repo.ancestry(branch="main")]
    assert commits[0].startswith("cycle 20251127_0000") and commits[1] == "setup 20251127_0000"


def test_second_cycle_appends_and_publish_twice_is_a_noop(tmp_path):
    url = f"file://{tmp_path}/store"
    repo, record, forks = run_cycle(tmp_path, url, "20251127_0000", 1)
    es.publish(repo, record, forks)
    repo, record2, forks2 = run_cycle(tmp_path, url, "20251128_0000", 2)
    first = es.publish(repo, record2, forks2)
    again = es.publish(repo, record2, forks2)
    assert again["already_published"] and again["snapshot"] == first["snapshot"]
    assert repo.lookup_branch("main") == first["snapshot"]
    data = main_tp(repo)
    assert data.shape[0] == 2
    np.testing.assert_array_equal(data[1, 3], fill(2, 3))
    np.testing.assert_array_equal(data[0, 3], fill(1, 3))


def test_setup_is_reused_on_retry(tmp_path):
    url = f"file://{tmp_path}/store"
    repo = es.open_repo(url, STORAGE)
    a = es.setup(repo, schema(), "20251127_0000", 1, tmp_path / "s.json")
    b = es.setup(repo, schema(), "20251127_0000", 1, tmp_path / "s.json")
    assert a == b
    # the record was lost but the branch is there: find it again instead of failing
    (tmp_path / "s.json").unlink()
    c = es.setup(repo, schema(), "20251127_0000", 1, tmp_path / "s.json")
    assert c.branch == a.branch and c.time_index == a.time_index and c.main_before == a.main_before


def test_publish_goes_on_top_when_main_moved(tmp_path):
    url = f"file://{tmp_path}/store"
    repo, record, forks = run_cycle(tmp_path, url, "20251127_0000", 1)
    s = repo.writable_session("main")
    zarr.open_group(store=s.store, mode="a").attrs["someone"] = "else"
    moved = s.commit("someone else")
    result = es.publish(repo, record, forks)
    main = repo.lookup_branch("main")
    assert result["snapshot"] == main == repo.lookup_tag("cycle-20251127_0000")
    assert next(iter(repo.ancestry(branch="main"))).parent_id == moved
    root = zarr.open_group(store=repo.readonly_session("main").store, mode="r")
    assert root.attrs["someone"] == "else" and root["time"][:].tolist() == [1]
    assert np.array_equal(main_tp(repo)[0, 4], fill(1, 4))
    assert set(repo.list_branches()) == {"main"}


def two_runs_one_store(tmp_path: Path):
    """Two cycles set up from the same main, each writing at the same new time index."""
    url = f"file://{tmp_path}/store"
    a = run_cycle(tmp_path / "a", url, "20251127_0000", 1)
    b = run_cycle(tmp_path / "b", url, "20251128_0000", 2)
    assert a[1].time_index == b[1].time_index == 0 and a[1].main_before == b[1].main_before
    return a, b


def test_a_run_that_loses_the_publish_race_finishes_by_itself(tmp_path):
    (repo, rec_a, forks_a), (_, rec_b, forks_b) = two_runs_one_store(tmp_path)
    es.publish(repo, rec_a, forks_a)
    result = es.publish(repo, rec_b, forks_b)  # main moved: B goes on top, at index 1
    assert not result["already_published"]
    root = zarr.open_group(store=repo.readonly_session("main").store, mode="r")
    assert root["time"][:].tolist() == [1, 2]
    tp = main_tp(repo)
    for m in range(MEMBERS):
        assert np.array_equal(tp[0, m], fill(1, m)) and np.array_equal(tp[1, m], fill(2, m))
    # Each tag holds its cycle; A's tag is an ancestor of B's, nothing partial in between.
    ids = [s.id for s in repo.ancestry(branch="main")]
    assert ids.index(repo.lookup_tag("cycle-20251128_0000")) == 0
    assert ids.index(repo.lookup_tag("cycle-20251127_0000")) == 1
    assert set(repo.list_branches()) == {"main"}
    again = es.publish(repo, rec_b, forks_b)  # the same command once more: nothing changes
    assert again["already_published"] and repo.lookup_branch("main") == ids[0]


def test_a_race_loser_that_died_before_tagging_is_tagged_not_written_twice(tmp_path):
    (repo, rec_a, forks_a), (_, rec_b, forks_b) = two_runs_one_store(tmp_path)
    es.publish(repo, rec_a, forks_a)
    s = repo.writable_session(rec_b.branch)
    s.merge(*[es.load_fork(f)["fork"] for f in forks_b])
    committed = s.commit("cycle 20251128_0000: 3 batches")
    on_main = es._onto_moved_main(repo, rec_b, committed)  # then the publisher died
    result = es.publish(repo, rec_b, forks_b)
    assert result["snapshot"] == on_main == repo.lookup_tag("cycle-20251128_0000")
    root = zarr.open_group(store=repo.readonly_session("main").store, mode="r")
    assert root["time"][:].tolist() == [1, 2]


def test_publish_resumes_after_a_crash_between_commit_and_main(tmp_path):
    url = f"file://{tmp_path}/store"
    repo, record, forks = run_cycle(tmp_path, url, "20251127_0000", 1)
    s = repo.writable_session(record.branch)
    s.merge(*[es.load_fork(f)["fork"] for f in forks])
    committed = s.commit("cycle 20251127_0000: 3 batches")  # then the publisher died
    result = es.publish(repo, record, forks)
    assert result["snapshot"] == committed == repo.lookup_branch("main")


def test_publish_checks_before_committing(tmp_path):
    url = f"file://{tmp_path}/store"
    repo, record, forks = run_cycle(tmp_path, url, "20251127_0000", 1)

    def complete(coverage):
        if 5 not in coverage["tp"]:
            raise es.PublishError("member 5 missing")

    with pytest.raises(es.PublishError, match="member 5 missing"):
        es.publish(repo, record, forks[:2], check=complete)
    assert main_tp(repo).shape[0] == 0
    assert repo.lookup_branch(record.branch) == record.setup_snapshot


class Evil:
    def __reduce__(self):
        return (print, ("owned",))


def test_fork_files_load_through_the_allow_list(tmp_path):
    bad = tmp_path / "bad.fork"
    bad.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(UnsafePickleError, match=r"bad\.fork"):
        es.load_fork(bad)


def test_reader_of_main_never_sees_a_partial_cycle(tmp_path):
    url = f"file://{tmp_path}/store"
    repo = es.open_repo(url, STORAGE)
    es.setup(repo, schema(), "20251126_0000", 0, tmp_path / "first.json")  # layout exists
    seen: list[tuple[int, bool]] = []
    stop = threading.Event()

    def poll():
        reader = es.open_repo(url, STORAGE, create=False)
        while not stop.is_set():
            data = main_tp(reader)
            seen.append((data.shape[0], bool(data.shape[0] == 0 or not np.isnan(data).any())))

    t = threading.Thread(target=poll)
    t.start()
    try:
        repo, record, forks = run_cycle(tmp_path, url, "20251127_0000", 1)
        es.publish(repo, record, forks)
        deadline = time.monotonic() + 10
        while not any(n == 1 for n, _ in seen) and time.monotonic() < deadline:
            pass
    finally:
        stop.set()
        t.join()
    assert {n for n, _ in seen} == {0, 1}, "the reader saw main before and after"
    assert all(ok for _, ok in seen), "a reader saw a cycle with missing members"


def test_setup_after_publish_writes_nothing_again(tmp_path):
    url = f"file://{tmp_path}/store"
    repo, record, forks = run_cycle(tmp_path, url, "20251127_0000", 1)
    first = es.publish(repo, record, forks)
    (tmp_path / "20251127_0000-setup.json").unlink()  # a re-run after a workflow change
    again = es.setup(repo, schema(), "20251127_0000", 1, tmp_path / "20251127_0000-setup.json")
    assert again.published and again.setup_snapshot == first["snapshot"] and again.time_index == 0
    es.write_fork(repo, again, lambda root, t: pytest.fail("must not write"), tmp_path / "f.fork")
    result = es.publish(repo, again, [tmp_path / "f.fork"])
    assert result["already_published"] and repo.lookup_branch("main") == first["snapshot"]


def test_a_member_redone_after_publish_leaves_the_archive_as_published(tmp_path):
    """A member's receipt removed after publish: its fork job runs again with the setup
    record of the original run, whose branch is gone. It writes no fork, and publish again
    keeps the published snapshot."""
    url = f"file://{tmp_path}/store"
    repo, record, forks = run_cycle(tmp_path, url, "20251127_0000", 1)
    published = es.publish(repo, record, forks)["snapshot"]

    def write(root, t):
        root["tp"][t, 0] = fill(99, 0)

    again = tmp_path / "again.fork"
    es.write_fork(repo, record, write, again)
    assert "already_published" in again.read_text()
    assert es.publish(repo, record, [*forks[1:], again])["already_published"]
    assert repo.lookup_branch("main") == published
    np.testing.assert_array_equal(main_tp(repo)[0, 0], fill(1, 0))


def test_a_second_cycle_for_a_taken_slot_is_refused_and_leaves_nothing(tmp_path):
    """Two cycles with one time value (the quest keys by issue day): the second is refused
    at setup, before any branch exists, and main keeps the first."""
    url = f"file://{tmp_path}/store"
    repo, record, forks = run_cycle(tmp_path, url, "20251127_0000", 7)
    es.publish(repo, record, forks)
    main_before = repo.lookup_branch("main")
    with pytest.raises(es.PublishError) as err:
        es.setup(repo, schema(), "20251127_1200", 7, tmp_path / "second-setup.json")
    assert "cycle 20251127_1200: its time slot (index 0) in this store is already published, " \
           "not as cycle-20251127_1200" in str(err.value)
    assert set(repo.list_branches()) == {"main"}
    assert repo.lookup_branch("main") == main_before
    assert not (tmp_path / "second-setup.json").exists()


def test_commits_to_a_local_store_take_turns(tmp_path):
    """`commits_serialized` on a file:// store is an flock: a second holder waits."""
    import threading
    import time

    url = f"file://{tmp_path}/store"
    order: list[str] = []

    def second() -> None:
        with es.commits_serialized(url):
            order.append("second")

    with es.commits_serialized(url):
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.3)
        order.append("first done")
    t.join(5)
    assert order == ["first done", "second"]
    with es.commits_serialized("s3://bucket/store"):  # object stores: no local lock
        pass
    assert sorted(p.name for p in tmp_path.iterdir()) == ["store.commit.lock"]


@pytest.fixture(params=["s3", "gs"])
def object_store(request, monkeypatch):
    """A fresh store URL on the S3 server (moto) or the GCS emulator (fake-gcs-server),
    with the environment a run there has; the Storage for it."""
    name = request.node.name.split("[")[0][-40:].replace("_", "-")
    if request.param == "s3":
        import boto3

        endpoint = request.getfixturevalue("s3_server")
        for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
            monkeypatch.setenv(key, "test")
        bucket = f"stores-{time.time_ns()}"
        boto3.client("s3", endpoint_url=endpoint, region_name="eu-central-1").create_bucket(
            Bucket=bucket, CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
        return f"s3://{bucket}/{name}.icechunk", Storage(retries=2, s3_endpoint_url=endpoint)
    monkeypatch.setenv("STORAGE_EMULATOR_HOST", request.getfixturevalue("fake_gcs"))
    return f"gs://ensflow-test/{time.time_ns()}/{name}.icechunk", Storage(retries=2)


def test_cycles_started_together_on_a_new_object_store_all_land(tmp_path, object_store):
    """Three runs start at once on a store nobody created: they race to create the
    repository, its layout, and main at publish. Each finishes first time, and each tag
    is the commit that holds its cycle (conditional writes on S3 and GCS decide races)."""
    url, storage = object_store
    cycles = {"20251127_0000": 1, "20251204_0000": 2, "20251211_0000": 3}
    errors: list[BaseException] = []
    start = threading.Barrier(len(cycles))

    def one_run(cycle: str, value: int) -> None:
        try:
            start.wait()
            repo = es.open_repo(url, storage)
            record = es.setup(repo, schema(), cycle, value, tmp_path / f"{cycle}-setup.json")

            def write(root, t):
                for m in range(MEMBERS):
                    root["tp"][t, m] = fill(value, m)

            fork = tmp_path / f"{cycle}-fork.pkl"
            es.write_fork(repo, record, write, fork)
            es.publish(repo, record, [fork])
        except BaseException as exc:  # reported below, with the cycle
            errors.append(exc)

    threads = [threading.Thread(target=one_run, args=item) for item in cycles.items()]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert [repr(e) for e in errors] == []
    repo = es.open_repo(url, storage, create=False)
    main = zarr.open_group(store=repo.readonly_session("main").store, mode="r")
    times = main["time"][:].tolist()
    assert sorted(times) == [1, 2, 3]
    for cycle, value in cycles.items():
        tagged = zarr.open_group(store=repo.readonly_session(tag=f"cycle-{cycle}").store, mode="r")
        index = tagged["time"][:].tolist().index(value)
        for m in range(MEMBERS):
            assert np.array_equal(tagged["tp"][index, m], fill(value, m)), (cycle, m)
        # The tag is on main's history and nothing after it changed this cycle's slot.
        assert es.published_snapshot(repo, cycle) == repo.lookup_tag(f"cycle-{cycle}")
        assert np.array_equal(main["tp"][times.index(value)], tagged["tp"][index])
    assert set(repo.list_branches()) == {"main"}


def test_publishing_fifty_forks_reads_no_chunk_back(tmp_path, object_store, monkeypatch):
    """Completeness comes from what each fork recorded: on S3 and GCS a 50-fork publish
    sends no GET for a chunk (counted by a proxy in front of the server), and the next
    cycle's 50-fork publish, straight to the server, takes under 0.5 s."""
    from urllib.parse import unquote

    from conftest import FaultProxy

    url, storage = object_store
    members = 50
    rng = np.random.default_rng(0)
    big = es.StoreSchema(
        coords={"member": np.arange(members), "step": np.arange(STEPS),
                "latitude": np.linspace(1, 0, 40), "longitude": np.linspace(0, 1, 50)},
        coord_attrs={},
        arrays=(es.ArraySpec("tp", ("member", "step", "latitude", "longitude"),
                             (members, STEPS, 40, 50), {"units": "m"}),))

    def cycle_forks(cycle: str, value: int) -> tuple[es.SetupRecord, list[Path], np.ndarray]:
        values = rng.standard_normal((members, STEPS, 40, 50)).astype(np.float32)  # not inlined
        repo = es.open_repo(url, storage)
        record = es.setup(repo, big, cycle, value, tmp_path / f"{cycle}-setup.json")
        forks = []
        for m in range(members):
            def write(root, t, m=m):
                root["tp"][t, m] = values[m]
                return {"tp": [m]}

            forks.append(tmp_path / f"{cycle}-fork{m:02d}.pkl")
            es.write_fork(repo, record, write, forks[-1])
        return record, forks, values

    record, forks, values = cycle_forks("20251127_0000", 1)
    upstream = storage.s3_endpoint_url or os.environ["STORAGE_EMULATOR_HOST"]
    with FaultProxy(upstream.removesuffix("/")) as proxy, monkeypatch.context() as env:
        if storage.s3_endpoint_url:
            counted = Storage(retries=2, s3_endpoint_url=proxy.url)
        else:
            counted = storage
            env.setenv("STORAGE_EMULATOR_HOST", proxy.url)
        repo = es.open_repo(url, counted, create=False)  # as a new process: nothing cached
        result = es.publish(repo, record, forks, check=lambda cov: None)
        sent = list(proxy.requests)
    gets = [unquote(path) for method, path in sent if method == "GET"]
    assert any("/manifests/" in g for g in gets), "the proxy saw the publish"
    assert [g for g in gets if "/chunks/" in g] == []
    main = zarr.open_group(store=repo.readonly_session(tag=result["tag"]).store, mode="r")
    assert np.array_equal(main["tp"][0], values)

    record, forks, values = cycle_forks("20251204_0000", 2)
    repo = es.open_repo(url, storage, create=False)
    t0 = time.perf_counter()
    result = es.publish(repo, record, forks, check=lambda cov: None)
    seconds = time.perf_counter() - t0
    assert seconds < 0.5, f"publish of {members} forks took {seconds:.2f}s"
    main = zarr.open_group(store=repo.readonly_session(tag=result["tag"]).store, mode="r")
    assert np.array_equal(main["tp"][1], values)
