import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from ensflow.errors import EnsflowError
from ensflow.layout import MEMBER_CLAIM, Layout
from ensflow.ops import scratch


def member_dir(root, cycle, member):
    return Path(Layout(scratch=str(root)).member_dir(cycle, member))


def test_window_blocks_until_a_member_frees_its_slot(tmp_path):
    cyc = tmp_path / "20251127_0000"
    m1, m2, m3 = (member_dir(tmp_path, "20251127_0000", m) for m in (1, 2, 3))
    scratch.claim(m1, window=2)
    (m1 / "input.pkl").write_bytes(b"x")
    scratch.release_claim(m1)
    scratch.claim(m2, window=2)
    assert [d.name for d in scratch.occupants(cyc)] == ["member_001", "member_002"]

    got = threading.Event()
    t = threading.Thread(target=lambda: (scratch.claim(m3, window=2, poll_s=0.05), got.set()))
    t.start()
    time.sleep(0.3)
    assert not got.is_set(), "a third member must wait while two hold files"
    (m1 / "input.pkl").unlink()  # member 1's last file goes (temp() after upload)
    t.join(5)
    assert got.is_set()


def test_failed_member_does_not_hold_a_slot(tmp_path):
    m1, m2 = (member_dir(tmp_path, "c", m) for m in (1, 2))
    m1.mkdir(parents=True)
    (m1 / "a.grib").write_bytes(b"x")
    scratch.mark_failed(m1)
    scratch.claim(m2, window=1, timeout_s=1)
    assert (m1 / "a.grib").exists(), "a failed upload keeps its GRIBs for the retry"
    scratch.clear_failed(m1)
    assert scratch.occupied(m1)


def test_claim_of_a_dead_process_is_stale(tmp_path):
    m1, m2 = (member_dir(tmp_path, "c", m) for m in (1, 2))
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    m1.mkdir(parents=True)
    (m1 / MEMBER_CLAIM).write_text(f"{os.uname().nodename} {proc.stdout.strip()}\n")
    assert not scratch.occupied(m1)
    scratch.claim(m2, window=1, timeout_s=1)


def test_timeout_names_the_holders(tmp_path):
    m1, m2 = (member_dir(tmp_path, "c", m) for m in (1, 2))
    scratch.claim(m1, window=1)
    with pytest.raises(EnsflowError, match="member_001"):
        scratch.claim(m2, window=1, poll_s=0.01, timeout_s=0.1)


def test_a_zombie_is_not_alive():
    """kill -9 of a run leaves its processes as zombies until reaped: they hold nothing."""
    import subprocess
    import sys
    import time

    from ensflow.ops.scratch import pid_alive

    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert pid_alive(child.pid)
        child.kill()
        time.sleep(0.3)  # not reaped yet: a zombie
        assert not pid_alive(child.pid)
    finally:
        child.wait()
    assert not pid_alive(child.pid)
