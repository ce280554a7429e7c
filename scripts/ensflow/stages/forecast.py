"""Stage: AIFS-ENS inference for one member with anemoi-inference, written as GRIB windows.

The runner is the GPU's work; everything a state becomes on CPU (0-step totals, GRIB
messages, the quest's 1.5° fields) happens on a writer thread beside it, so the next step
starts while the last one is encoded. The queue between them is bounded, so memory is too.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

import google_crc32c
import numpy as np

from ensflow.adapters import checkpoint_info, storage
from ensflow.adapters.devices import Slot
from ensflow.adapters.grib_encode import ENSEMBLE_SIZE, GribEncoder
from ensflow.config import Settings
from ensflow.cycle import cycle_datetime, member_id
from ensflow.errors import ForecastError
from ensflow.layout import Layout, forecast_windows
from ensflow.ops import model_process
from ensflow.ops.upload_ahead import UploadAhead, upload_ahead
from ensflow.science import input_state, quest

log = logging.getLogger(__name__)


def member_seed(settings: Settings, member: int) -> int:
    """Distinct, reproducible randomness per member."""
    return int(settings.forecast.seed_base) + member


class MemberWriter:
    """What one member's states become: GRIB windows in order, and the quest's 1.5° fields."""

    def __init__(self, settings: Settings, info: checkpoint_info.CheckpointInfo, member: int,
                 outputs: list[str | Path], quest_out: str | Path | None,
                 window_done: Callable[[Path], None] | None = None) -> None:
        fc = settings.forecast
        self.windows = forecast_windows(fc.lead_time, fc.hours_per_file)
        if len(outputs) != len(self.windows):
            raise ValueError(f"{len(outputs)} output paths for {len(self.windows)} windows")
        self.what = f"member {member_id(member)}"
        self.settings, self.member = settings, member
        self.outputs, self.quest_out = outputs, quest_out
        self.base = cycle_datetime(settings.cycle)
        self.specs = {s.name: s for s in info.output_fields}
        self.encoder = GribEncoder(info.grid, self.base, member, ENSEMBLE_SIZE,
                                   fc.bits_per_value)
        self.totals: dict[str, np.ndarray] = {}
        self.regridder = None
        if quest_out is not None:
            q = settings.quest
            self.regridder = quest.InForecastRegridder(
                [quest.VARIABLES[v] for v in q.variables], q.methods)
        self.window_done = window_done
        self.current: WindowFile | None = None
        self.window_index = -1
        self.fields_written = 0

    def add(self, step: int, fields: dict[str, Any]) -> None:
        target = next(k for k, (a, b) in enumerate(self.windows) if a < step <= b)
        if target != self.window_index:
            self._close_window(complete=True)
            self.window_index = target
            self.current = WindowFile(self.outputs[target])
        encoded: dict[str, np.ndarray] = {}
        for name, values in fields.items():
            spec = self.specs.get(name)
            if spec is None:
                continue
            # On a CPU device anemoi yields each field as a column of the step's (values,
            # variables) tensor: one copy here, not a strided walk of the whole state in
            # each of the encoder's passes (no copy for the contiguous arrays off a GPU).
            values = np.ascontiguousarray(values)
            if spec.accumulated:  # the model gives per-step amounts; GRIB holds 0-step totals
                self.totals[name] = self.totals.get(name, 0.0) + values.astype(np.float64)
                values = self.totals[name]
            try:
                self.encoder.write(self.current, spec, step, values)
            except ForecastError as exc:
                raise ForecastError(f"{self.what}: {exc}") from None
            encoded[name] = values
            self.fields_written += 1
        if self.regridder is not None and self.regridder.wants(step):
            self.regridder.add(self.encoder, self.specs, step, encoded)

    def _close_window(self, complete: bool) -> None:
        if self.current is None:
            return
        window, self.current = self.current, None
        window.close()
        if complete and self.window_done is not None:
            self.window_done(window.path)

    def close(self) -> None:
        """Files closed, also after an error (a window left open is not handed on)."""
        self._close_window(complete=False)
        self.encoder.close()

    def finish(self) -> None:
        """After the last state: every window written, the quest fields saved.

        The last window is not handed on: its upload is the upload job's, beside the next
        member's inference, so the GPU does not wait for it."""
        self.close()
        if self.window_index != len(self.windows) - 1:
            raise ForecastError(f"{self.what}: runner stopped before "
                                f"{self.settings.forecast.lead_time} h")
        if self.regridder is not None and self.quest_out is not None:
            self.regridder.save(self.quest_out, self.settings.cycle, self.member)
            log.info("%s: quest fields at %d steps on the 1.5° grid -> %s", self.what,
                     len(self.regridder.steps), self.quest_out)


class WindowFile:
    """A GRIB window being written, and the crc32c of its bytes computed as they go: kept
    with the file (storage.remember_crc32c), so its upload does not read ~1.2 GB again."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.file: BinaryIO = open(self.path, "wb")  # noqa: SIM115 (closed in close())
        self.checksum = google_crc32c.Checksum()

    def write(self, data: bytes) -> int:
        self.checksum.update(data)
        return self.file.write(data)

    def close(self) -> None:
        self.file.close()
        storage.remember_crc32c(self.path, storage.crc32c_text(self.checksum))


_DONE = object()


class WriterThread:
    """A MemberWriter on its own thread, fed through a queue of at most `depth` states.

    The runner blocks only when the writer is `depth` states behind; a writer error stops
    the runner at its next state, with the writer's exception.

    The writer starts a state only while its gate is open: the runner closes it when a state
    arrives and opens it when it calls the model (`in_model`), so the runner's own host work
    between two model calls (output copies, the next input tensor, forcings) does not share
    the CPU, memory bandwidth and GIL with encoding. A runner waiting on a full queue, or
    done, opens it too, so the gate never stalls either side.
    """

    def __init__(self, writer: MemberWriter, depth: int) -> None:
        self.writer = writer
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.error: BaseException | None = None
        self.busy_s = 0.0
        self._gate = threading.Condition()
        self._open = True
        self.thread = threading.Thread(target=self._drain, name="grib-writer", daemon=True)
        self.thread.start()

    def _drain(self) -> None:
        while (item := self.queue.get()) is not _DONE:
            with self._gate:
                self._gate.wait_for(lambda: self._open)
            if self.error is None:
                t0 = time.perf_counter()
                try:
                    self.writer.add(*item)
                except BaseException as exc:  # handed to the runner's thread
                    self.error = exc
                self.busy_s += time.perf_counter() - t0

    def _set_gate(self, is_open: bool) -> None:
        with self._gate:
            self._open = is_open
            self._gate.notify_all()

    def runner_busy(self) -> None:
        """The runner got a state and works on the host until its next model call."""
        self._set_gate(False)

    def in_model(self) -> None:
        """The runner is in the model: the GPU's share of a step, the host free."""
        self._set_gate(True)

    def _raise(self) -> None:
        if self.error is not None:
            raise self.error

    def put(self, step: int, fields: dict[str, Any]) -> None:
        self._raise()
        if self.queue.full():  # the runner waits for the writer: let it write
            self._set_gate(True)
        self.queue.put((step, fields))
        self.runner_busy()

    def join(self) -> None:
        """Wait for the writer to catch up (also after a runner error: files get closed)."""
        self._set_gate(True)
        self.queue.put(_DONE)
        self.thread.join()
        self._raise()


@contextlib.contextmanager
def gate_on_model_calls(runner: Any, writer: WriterThread) -> Iterator[None]:
    """Open the writer's gate whenever `runner` calls its model, for the length of a member
    (the runner outlives it in a model process, so its own method comes back after)."""
    call_model = runner.predict_step

    def predict_step(*args: Any, **kwargs: Any) -> Any:
        writer.in_model()
        return call_model(*args, **kwargs)

    runner.predict_step = predict_step
    try:
        yield
    finally:
        del runner.predict_step


def use_threads(threads: int | None) -> None:
    """The cores Snakemake gave the job (`threads:`, `--set-threads forecast=N`)."""
    if threads:
        import torch

        torch.set_num_threads(int(threads))


def new_runner(settings: Settings, member: int) -> Any:
    """anemoi-inference's SimpleRunner for the checkpoint (the model loads on first use)."""
    fc = settings.forecast
    os.environ["ANEMOI_INFERENCE_NUM_CHUNKS"] = str(fc.num_chunks)
    from anemoi.inference.runners.simple import SimpleRunner

    return SimpleRunner(settings.checkpoint, device=fc.device, precision=fc.precision,
                        seed=member_seed(settings, member))


def forecast_member(runner: Any, settings: Settings, member: int, input_pkl: str | Path,
                    outputs: list[str | Path], quest_out: str | Path | None = None
                    ) -> dict[str, Any]:
    """Run one member on a ready runner to the lead time; write one GRIB file per window.

    With `quest_out`, the AI Weather Quest fields are regridded to 1.5° from the states the
    runner yields, and saved beside the GRIB files. The same runner serves member after
    member: its generator is re-seeded here as a new runner would be.
    """
    import torch

    fc = settings.forecast
    what = f"member {member_id(member)}"
    info = checkpoint_info.read(settings.checkpoint)
    state = input_state.load(str(input_pkl), info, what)
    base = cycle_datetime(settings.cycle)
    if state["date"] != base:
        raise ForecastError(f"{what}: input state is for {state['date']:%Y%m%d_%H%M}, "
                            f"cycle is {settings.cycle}")
    torch.manual_seed(member_seed(settings, member))
    runner.reference_date = None  # taken from the first input state a runner sees

    ahead = UploadAhead(settings, member) if upload_ahead(settings) else None
    writer = WriterThread(MemberWriter(settings, info, member, outputs, quest_out,
                                       ahead.send if ahead else None), fc.writer_queue)
    nsteps = fc.lead_time // info.timestep_hours
    started = t_step = time.perf_counter()
    inference_started = dt.datetime.now()
    try:
        try:
            with gate_on_model_calls(runner, writer):
                for i, out in enumerate(runner.run(input_states=state,
                                                   lead_time=fc.lead_time), 1):
                    writer.runner_busy()
                    step = round((out["date"] - base) / dt.timedelta(hours=1))
                    # The runner refills this dict at its next step, but never writes an
                    # array it has yielded: each is its own copy off a GPU, or on a CPU a
                    # view of that step's output tensor, which the next model call does
                    # not reuse.
                    fields = dict(out["fields"])
                    writer.put(step, fields)
                    now = time.perf_counter()
                    log.info("%s: step %3d h (%d/%d) %.2fs, ETA %.0fs", what, step, i, nsteps,
                             now - t_step, (now - started) / i * (nsteps - i))
                    t_step = now
            inference_ended = dt.datetime.now()
        finally:
            writer.join()  # the writer catches up (or says why it stopped)
        writer.writer.finish()
        after = (dt.datetime.now() - inference_ended).total_seconds()
        sent = ahead.finish() if ahead else None
    except BaseException:
        writer.writer.close()
        if ahead:
            ahead.abandon()
        raise
    elapsed = time.perf_counter() - started
    fields_written = writer.writer.fields_written
    log.info("%s: %d fields in %d files, %.1fs (%.0f fields/s); writer busy %.1fs beside "
             "the runner, %.1fs after it", what, fields_written, len(outputs), elapsed,
             fields_written / elapsed, writer.busy_s, after)
    if sent:
        log.info("%s: %s", what, sent)
    return {"fields": fields_written, "seconds": elapsed, "seed": member_seed(settings, member),
            "inference": [inference_started.isoformat(timespec="milliseconds"),
                          inference_ended.isoformat(timespec="milliseconds")]}


# The model process's work (ensflow.ops.model_process), named so it is imported there.
MODEL_HANDLER = "ensflow.stages.forecast:serve_member"


def serve_member(state: dict[str, Any], req: dict[str, Any]) -> dict[str, Any]:
    """In a GPU slot's model process: load the runner once, then run each member on it."""
    settings = Settings.from_config(req["config"])
    use_threads(req["threads"])  # per member: each job may have been given other cores
    if "runner" not in state:
        t0 = time.perf_counter()
        state["runner"] = new_runner(settings, req["member"])
        state["runner"].model  # noqa: B018 (the load: once per process)
        log.info("model loaded in %.1fs by model process %d (once for this GPU slot)",
                 time.perf_counter() - t0, os.getpid())
    else:
        log.info("model already loaded in process %d (%d member(s) served)", os.getpid(),
                 state["served"])
    return forecast_member(state["runner"], settings, req["member"], req["input"],
                           req["outputs"], req["quest_out"])


def run_on_worker(settings: Settings, slot: Slot, member: int, input_pkl: str | Path,
                  outputs: list[str | Path], quest_out: str | Path | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    """One member on the slot's model process, which keeps the model loaded across members
    (`forecast.worker: true`); started if none serves this slot, checkpoint and code."""
    fc = settings.forecast
    layout = Layout.of(settings)
    ckpt = Path(settings.checkpoint).resolve()
    st = ckpt.stat()
    name = model_process.address(Path(layout.gpu_slots()).resolve(), slot.name, ckpt,
                                 st.st_size, st.st_mtime_ns, fc.device, fc.precision,
                                 fc.num_chunks)
    what = f"member {member_id(member)}"
    config = dict(settings.config)
    if settings.handed("bucket"):  # the process may have been started from another directory
        config["bucket"] = storage.absolute_url(settings.bucket)
    payload = {"what": what, "member": member, "config": config, "threads": threads,
               "input": str(Path(input_pkl).resolve()),
               "outputs": [str(Path(p).resolve()) for p in outputs],
               "quest_out": str(Path(quest_out).resolve()) if quest_out else None}
    try:
        return model_process.request(name, MODEL_HANDLER, fc.worker_idle_seconds,
                                     layout.model_process_log(slot.name), payload)
    except model_process.ModelProcessError as exc:
        message = str(exc)
        raise ForecastError(message if message.startswith(what) else f"{what}: {message}"
                            ) from None


def run_member(settings: Settings, member: int, input_pkl: str | Path,
               outputs: list[str | Path], quest_out: str | Path | None = None,
               threads: int | None = None) -> dict[str, Any]:
    """One member in this process: load the model, run, write (`forecast.worker: false`)."""
    started = time.perf_counter()
    use_threads(threads)
    runner = new_runner(settings, member)
    result = forecast_member(runner, settings, member, input_pkl, outputs, quest_out)
    result["seconds"] = time.perf_counter() - started
    return result
