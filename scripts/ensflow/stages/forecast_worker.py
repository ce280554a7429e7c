"""One model process per GPU slot: the checkpoint is loaded once and serves member after member.

Snakemake still runs one `forecast` job per member (its files, temp() clean-up, resume and
retries are unchanged); the job hands its member to the slot's model process over a Unix
socket and relays its log. The first job of a slot starts the process; it exits after
`forecast.worker_idle_seconds` without a member, or when the job that asked goes away
mid-member (the member is abandoned at its next step, as a killed job would be).

The socket is in Linux's abstract namespace: nothing on disk to go stale, and a dead
process frees its name. The name hashes the slot, the checkpoint file and the code, so a
new checkpoint or new code gets a new process.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from ensflow.adapters.devices import Slot
from ensflow.config import Settings
from ensflow.cycle import member_id
from ensflow.errors import EnsflowError, ForecastError

log = logging.getLogger("ensflow.stages.forecast_worker")  # also when run as __main__
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `ensflow`
START_TIMEOUT_S = 120.0


def _code_stamp() -> str:
    """The newest change under the package: a worker started before it must not serve."""
    newest = max(p.stat().st_mtime_ns for p in (PACKAGE_ROOT / "ensflow").rglob("*.py"))
    return f"{PACKAGE_ROOT}:{newest}"


def address(settings: Settings, slot: Slot) -> str:
    """The slot's abstract socket name for this checkpoint, model settings and code."""
    fc = settings.forecast
    ckpt = Path(settings.checkpoint).resolve()
    st = ckpt.stat()
    key = json.dumps([str(Path(settings.scratch).resolve()), slot.name, str(ckpt),
                      st.st_size, st.st_mtime_ns, fc.device, fc.precision, fc.num_chunks,
                      _code_stamp(), os.getuid()])
    return "\0ensflow-forecast-" + hashlib.sha256(key.encode()).hexdigest()[:32]


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


class _Relay(logging.Handler):
    """Sends the worker's log records to the job that asked.

    A send that fails means the job went away: the error propagates into the member's
    loop (logging's handle() does not catch it), which stops the member at its next step.
    """

    def __init__(self, conn: socket.socket) -> None:
        super().__init__()
        self.conn = conn
        self.gone = False

    def emit(self, record: logging.LogRecord) -> None:
        try:
            _send(self.conn, {"log": record.getMessage(), "level": record.levelno,
                              "name": record.name})
        except OSError:
            self.gone = True
            raise


# ------------------------------------------------------------------------- the job's side


def _connect(name: str) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(name)
    except (FileNotFoundError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


def _start(name: str, settings: Settings, log_path: Path) -> socket.socket:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ensflow.stages.forecast_worker", name[1:],
             str(settings.forecast.worker_idle_seconds)],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
            start_new_session=True)  # outlives this job; ends itself when idle
    log.info("started the model process (pid %d) for this GPU slot; its log: %s",
             proc.pid, log_path)
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        sock = _connect(name)
        if sock is not None:
            return sock
        if proc.poll() is not None and (sock := _connect(name)) is None:
            tail = log_path.read_text(errors="replace").splitlines()[-5:]
            raise ForecastError(f"the model process exited with {proc.returncode} before "
                                f"serving; {log_path}: {' | '.join(tail)}")
        time.sleep(0.05)
    proc.kill()
    raise ForecastError(f"the model process did not answer within {START_TIMEOUT_S:.0f}s; "
                        f"its log: {log_path}")


def run_on_worker(settings: Settings, slot: Slot, member: int, input_pkl: str | Path,
                  outputs: list[str | Path], quest_out: str | Path | None,
                  threads: int | None) -> dict[str, Any]:
    """Hand one member to the slot's model process (started if none serves) and wait."""
    name = address(settings, slot)
    log_path = Path(settings.scratch) / ".gpu-slots" / f"model-process.{slot.name}.log"
    sock = _connect(name)
    if sock is None:
        sock = _start(name, settings, log_path)
    what = f"member {member_id(member)}"
    with sock, sock.makefile("rb") as replies:
        _send(sock, {"member": member, "config": settings.config, "threads": threads,
                     "input": str(Path(input_pkl).resolve()),
                     "outputs": [str(Path(p).resolve()) for p in outputs],
                     "quest_out": str(Path(quest_out).resolve()) if quest_out else None})
        for line in replies:
            reply = json.loads(line)
            if "log" in reply:
                logging.getLogger(reply["name"]).log(reply["level"], "%s", reply["log"])
            elif "done" in reply:
                return dict(reply["done"])
            elif "error" in reply:
                raise ForecastError(reply["error"])
    raise ForecastError(f"{what}: the model process for {slot.name} ended mid-member; "
                        f"its log: {log_path}")


# ------------------------------------------------------------------- the model process


def serve(name: str, idle_s: float) -> None:
    """Accept members one at a time until none came for `idle_s` seconds."""
    from ensflow.stages.forecast import forecast_member, new_runner

    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind("\0" + name)
    except OSError:  # another process took the name first: it serves
        return
    server.listen(4)
    server.settimeout(idle_s)
    root = logging.getLogger()
    runner: Any = None
    served = 0
    log.info("model process %d serving %s", os.getpid(), name)
    while True:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            log.info("no member for %.0fs after %d served: exiting", idle_s, served)
            return
        conn.settimeout(None)
        relay = _Relay(conn)
        root.addHandler(relay)
        try:
            with conn, conn.makefile("rb") as requests:
                req = json.loads(requests.readline())
                settings = Settings.from_config(req["config"])
                if req["threads"]:
                    import torch

                    torch.set_num_threads(int(req["threads"]))
                if runner is None:
                    t0 = time.perf_counter()
                    runner = new_runner(settings, req["member"])
                    runner.model  # noqa: B018 (the load: once per process)
                    log.info("model loaded in %.1fs by model process %d (once for this GPU "
                             "slot)", time.perf_counter() - t0, os.getpid())
                else:
                    log.info("model already loaded in process %d (%d member(s) served)",
                             os.getpid(), served)
                try:
                    result = forecast_member(runner, settings, req["member"], req["input"],
                                             req["outputs"], req["quest_out"])
                except Exception as exc:  # told to the job; the process lives on
                    root.removeHandler(relay)
                    if relay.gone:
                        log.warning("member %s abandoned: its job went away",
                                    member_id(req["member"]))
                        continue
                    if not isinstance(exc, EnsflowError):
                        traceback.print_exc()
                    _send(conn, {"error": str(exc) if isinstance(exc, EnsflowError)
                                 else f"{type(exc).__name__}: {exc}"})
                else:
                    served += 1
                    _send(conn, {"done": {**result, "served": served, "pid": os.getpid()}})
        except (ConnectionError, OSError) as exc:
            log.warning("lost a job's connection: %s", exc)
        finally:
            root.removeHandler(relay)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(argv[0], float(argv[1]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
