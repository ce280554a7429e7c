"""A process that outlives the jobs it serves: what a GPU slot keeps loaded between members.

Snakemake runs one job per member (its files, temp() clean-up, resume and retries stay
as they are); each job hands its request to the slot's process over a Unix socket and
relays that process's log. The first job starts the process; it exits after
`idle_seconds` without a request, or abandons a request when the job that sent it goes
away (at its next log line, as a killed job would stop).

The socket is in Linux's abstract namespace: nothing on disk to go stale, and a dead
process frees its name. Callers choose the name so that a process serves only requests
it was started for (the forecast stage hashes slot, checkpoint and code into it).

What the process does is a handler named by import path (`module:function`), called as
`handler(state, request)`: `state` is a dict kept across requests (the loaded model).
"""

from __future__ import annotations

import hashlib
import importlib
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

from ensflow.errors import EnsflowError

log = logging.getLogger("ensflow.ops.model_process")  # also when run as __main__
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the directory holding `ensflow`
START_TIMEOUT_S = 120.0


class ModelProcessError(EnsflowError):
    """The process could not start, or ended in the middle of a request."""


def code_stamp() -> str:
    """The newest change under the package: a process started before it must not serve."""
    newest = max(p.stat().st_mtime_ns for p in (PACKAGE_ROOT / "ensflow").rglob("*.py"))
    return f"{PACKAGE_ROOT}:{newest}"


def address(*key: object) -> str:
    """An abstract socket name for this key (and this user and code)."""
    text = json.dumps([*map(str, key), code_stamp(), os.getuid()])
    return "\0ensflow-model-" + hashlib.sha256(text.encode()).hexdigest()[:32]


def _send(conn: socket.socket, message: dict[str, Any]) -> None:
    conn.sendall(json.dumps(message).encode() + b"\n")


class _Relay(logging.Handler):
    """Sends the process's log records to the job that asked.

    A send that fails means the job went away: the error propagates into the handler's
    work (logging's handle() does not catch it), which stops the request there.
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


def _start(name: str, handler: str, idle_s: float, log_path: Path) -> socket.socket:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(PACKAGE_ROOT),
                                                       os.environ.get("PYTHONPATH")]))}
    with open(log_path, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ensflow.ops.model_process", name[1:], handler, str(idle_s)],
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
            raise ModelProcessError(f"the model process exited with {proc.returncode} before "
                                    f"serving; {log_path}: {' | '.join(tail)}")
        time.sleep(0.05)
    proc.kill()
    raise ModelProcessError(f"the model process did not answer within "
                            f"{START_TIMEOUT_S:.0f}s; its log: {log_path}")


def request(name: str, handler: str, idle_s: float, log_path: str | Path,
            payload: dict[str, Any]) -> dict[str, Any]:
    """Send `payload` to the process named `name` (started if none serves) and wait for
    its answer, logging what it logs meanwhile. Its error comes back as ModelProcessError."""
    log_path = Path(log_path)
    sock = _connect(name) or _start(name, handler, idle_s, log_path)
    with sock, sock.makefile("rb") as replies:
        _send(sock, payload)
        for line in replies:
            reply = json.loads(line)
            if "log" in reply:
                logging.getLogger(reply["name"]).log(reply["level"], "%s", reply["log"])
            elif "done" in reply:
                return dict(reply["done"])
            elif "error" in reply:
                raise ModelProcessError(reply["error"])
    raise ModelProcessError(f"the model process ended mid-request; its log: {log_path}")


# ------------------------------------------------------------------- the process


def serve(name: str, handler_path: str, idle_s: float) -> None:
    """Answer requests one at a time until none came for `idle_s` seconds."""
    module, _, function = handler_path.partition(":")
    handler = getattr(importlib.import_module(module), function)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        server.bind("\0" + name)
    except OSError:  # another process took the name first: it serves
        return
    server.listen(4)
    server.settimeout(idle_s)
    root = logging.getLogger()
    state: dict[str, Any] = {"served": 0}
    log.info("model process %d serving %s with %s", os.getpid(), name, handler_path)
    while True:
        try:
            conn, _ = server.accept()
        except TimeoutError:
            log.info("no request for %.0fs after %d served: exiting", idle_s, state["served"])
            return
        conn.settimeout(None)
        relay = _Relay(conn)
        root.addHandler(relay)
        try:
            with conn, conn.makefile("rb") as requests:
                req = json.loads(requests.readline())
                try:
                    result = handler(state, req)
                except Exception as exc:  # told to the job; the process lives on
                    root.removeHandler(relay)
                    if relay.gone:
                        log.warning("request abandoned: its job went away (%s)",
                                    req.get("what", "?"))
                        continue
                    if not isinstance(exc, EnsflowError):
                        traceback.print_exc()
                    _send(conn, {"error": str(exc) if isinstance(exc, EnsflowError)
                                 else f"{type(exc).__name__}: {exc}"})
                else:
                    state["served"] += 1
                    _send(conn, {"done": {**result, "served": state["served"],
                                          "pid": os.getpid()}})
        except OSError as exc:
            log.warning("lost a job's connection: %s", exc)
        finally:
            root.removeHandler(relay)


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    serve(argv[0], argv[1], float(argv[2]))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
