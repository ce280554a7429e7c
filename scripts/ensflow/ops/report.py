"""The per-cycle run report: one self-contained HTML page plus the same numbers as JSON.

Written by the Snakefile's onsuccess/onerror hooks after every run, finished or failed, and
by `ensflow report` on demand. It reads only files the jobs left (see run_record), so it
works on a failed or half-finished cycle, and it must never be the reason a run fails.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import logging
import os
import statistics
from pathlib import Path
from typing import Any

from ensflow.config import Settings
from ensflow.errors import EnsflowError
from ensflow.layout import Layout
from ensflow.ops import timeline
from ensflow.ops.run_record import (
    CHAIN,
    GPU_RULE,
    CycleRecord,
    Job,
    load_cycle,
    member_state,
    mirror_from_storage,
    shown_path,
)
from ensflow.provenance import code_version
from ensflow.science.quest import products as quest_products

log = logging.getLogger("ensflow.ops.report")



# ------------------------------------------------------------------ numbers


def members_spec(members: list[int]) -> str:
    """[1, 2, 3, 7] -> '1-3,7': the way operators write them in the config."""
    out: list[str] = []
    run: list[int] = []
    for m in sorted(members):
        if run and m == run[-1] + 1:
            run.append(m)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [m]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def _stamp(when: dt.datetime | None) -> str | None:
    return when.isoformat(sep=" ", timespec="seconds") if when else None


def _round(x: float | None, ndigits: int = 3) -> float | None:
    return None if x is None else round(x, ndigits)


def job_row(job: Job, workdir: Path) -> dict[str, Any]:
    log_path = shown_path(job.log, workdir)
    b = job.benchmark
    return {
        "rule": job.rule, "label": job.label, "member": job.member, "status": job.status,
        "started": _stamp(job.started), "ended": _stamp(job.ended),
        "seconds": job.seconds, "wall_seconds": job.wall_seconds, "log": log_path,
        "benchmark": None if b is None else {
            "s": b.seconds, "max_rss_mb": b.max_rss_mb, "mean_load": b.mean_load,
            "cpu_time": b.cpu_time, "io_in_mb": b.io_in_mb, "io_out_mb": b.io_out_mb},
        "error": job.error, "shared": job.shared,
    }


def rule_summary(jobs: list[Job]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for rule in dict.fromkeys(j.rule for j in jobs):
        mine = [j for j in jobs if j.rule == rule]
        secs = [j.seconds for j in mine if j.seconds is not None]
        out[rule] = {
            "jobs": len(mine),
            "done": sum(j.status == "done" for j in mine),
            "failed": sum(j.status == "failed" for j in mine),
            "running": sum(j.status in ("running", "unknown") for j in mine),
            "total_s": _round(sum(secs), 1),
            "mean_s": _round(statistics.fmean(secs), 1) if secs else None,
            "max_s": _round(max(secs), 1) if secs else None,
        }
    return out


def member_table(record: CycleRecord) -> list[dict[str, Any]]:
    rows = []
    for m in record.members:
        row: dict[str, Any] = {"member": m}
        total = 0.0
        for rule in CHAIN:
            job = record.member_job(rule, m)
            row[rule] = job.seconds if job else None
            total += job.seconds if job and job.seconds is not None else 0.0
        row["chain_s"] = round(total, 1)
        row["status"] = member_state(record, m)
        rows.append(row)
    return rows


def bytes_moved(record: CycleRecord) -> dict[str, Any]:
    """Bytes per receipt kind: sent to the bucket, or skipped as already there (same checksum)."""
    out: dict[str, Any] = {}
    for kind in ("input", "forecast"):
        mine = [r for r in record.receipts if r.kind == kind]
        out[kind] = {"receipts": len(mine), "uploaded": sum(r.uploaded for r in mine),
                     "skipped": sum(r.skipped for r in mine), "total": sum(r.bytes for r in mine)}
    out["uploaded"] = out["input"]["uploaded"] + out["forecast"]["uploaded"]
    out["skipped"] = out["input"]["skipped"] + out["forecast"]["skipped"]
    out["total"] = out["input"]["total"] + out["forecast"]["total"]
    return out


COST_RULE = (
    "GPU-hours: wall seconds of every forecast job (benchmark time where recorded, else the "
    "log's) x GPUs per job (1 / forecast.members_per_gpu) / 3600. CPU core-hours: wall seconds "
    "x the cores Snakemake gave every other job of this cycle / 3600. "
    "Jobs logged outside logs/<cycle>/ (the demo checkpoint) are listed, not costed."
)


def cost(record: CycleRecord, settings: Settings) -> dict[str, Any]:
    rep = settings.report
    fc = settings.forecast
    gpus_per_job = 1.0 / fc.members_per_gpu  # validated: an integer >= 1
    gpu_s = sum(j.wall_seconds or 0.0 for j in record.jobs if j.rule == GPU_RULE and not j.shared)
    cpu_s = sum((j.wall_seconds or 0.0) * j.threads
                for j in record.jobs if j.rule != GPU_RULE and not j.shared)
    gpu_hours = gpu_s * gpus_per_job / 3600.0
    cpu_hours = cpu_s / 3600.0
    gpu_price = float(rep.gpu_price_per_hour)
    cpu_price = float(rep.cpu_price_per_hour)
    return {
        "device": fc.device, "gpus_per_forecast_job": gpus_per_job,
        "gpu_hours": gpu_hours, "cpu_core_hours": cpu_hours,
        "gpu_price_per_hour": gpu_price, "cpu_price_per_hour": cpu_price,
        "currency": rep.currency,
        "estimated": gpu_hours * gpu_price + cpu_hours * cpu_price, "rule": COST_RULE,
    }


def _snapshots(record: CycleRecord) -> dict[str, dict[str, Any]]:
    out = {}
    for stage in ("cgan", "quest"):
        data = record.records.get(f"{stage}_published")
        if data:
            out[stage] = {k: data.get(k) for k in ("store", "snapshot", "tag", "members", "partial")
                          if k in data}
    return out


def _sanity(record: CycleRecord) -> dict[str, Any] | None:
    data = record.records.get("quest_sanity")
    if not data:
        return None
    files = data.get("files") or {}
    return {"files": len(files), "members": len(data.get("members") or []),
            "partial": bool(data.get("partial")),
            "balance_flagged": sorted(name for name, f in files.items()
                                      if isinstance(f, dict) and f.get("balance_flag"))}


def overall_state(record: CycleRecord) -> str:
    jobs = [j for j in record.jobs if not j.shared]
    if any(j.status == "failed" for j in jobs):
        return "failed"
    if any(j.status in ("running", "unknown") for j in jobs):
        return "unfinished"
    if all(m in record.upload_receipts for m in record.members):
        return "complete"
    return "incomplete"


def summarise(record: CycleRecord, settings: Settings) -> dict[str, Any]:
    """Every number in the report, JSON-ready (report.json is exactly this)."""
    cycle_jobs = [j for j in record.jobs if not j.shared and j.started]
    ends = [j.ended for j in cycle_jobs if j.ended]
    checkpoint = record.records.get("checkpoint", {})
    maps = Layout.of(settings).quest_maps(quest_products(settings.quest.variables), record.cycle)
    return {
        "cycle": record.cycle,
        "generated_at": dt.datetime.now().isoformat(sep=" ", timespec="seconds"),
        "state": overall_state(record),
        "members": record.members,
        "members_spec": members_spec(record.members),
        "code_version": code_version(),
        "checkpoint_sha256": checkpoint.get("sha256"),
        "checkpoint": checkpoint.get("checkpoint"),
        "synthetic": settings.synthetic,
        "snapshots": _snapshots(record),
        "quest_sanity": _sanity(record),
        "started": _stamp(min((j.started for j in cycle_jobs if j.started), default=None)),
        "ended": _stamp(max(ends, default=None)),
        "gpu_busy": timeline.gpu_busy(record.jobs),
        "timeline": timeline.lanes(record.jobs),
        "rules": rule_summary(record.jobs),
        "member_table": member_table(record),
        "jobs": [job_row(j, record.workdir) for j in record.jobs],
        "bytes": bytes_moved(record),
        "cost": cost(record, settings),
        "failures": [{"job": j.name, "log": job_row(j, record.workdir)["log"], "error": j.error,
                      "excerpt": j.excerpt} for j in record.jobs if j.status == "failed"],
        "maps": [m for m in maps if (record.workdir / m).is_file()],
    }


# ------------------------------------------------------------------ HTML

_CSS = """
body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:1200px}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.8em;border-bottom:1px solid #ccc}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
th,td{border:1px solid #ddd;padding:.25em .6em;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
.done{color:#176117}.failed{color:#b00020;font-weight:bold}.running,.unknown,.unfinished{color:#a66b00}
.complete{color:#176117}.incomplete{color:#a66b00}
pre{background:#f7f7f7;padding:.6em;overflow-x:auto;font-size:.85em}
figure{display:inline-block;margin:.5em}figure img{max-width:560px}.note{color:#666;font-size:.85em}
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _s(value: float | None, digits: int = 1) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def _bytes(n: int) -> str:
    return f"{n / 1e6:,.1f} MB ({n:,} B)"


def _table(head: list[str], rows: list[list[tuple[str, str]]]) -> str:
    """Rows of (html, css class) cells; every text reaching here is escaped already."""
    out = ["<table><tr>", *(f"<th>{_e(h)}</th>" for h in head), "</tr>"]
    for row in rows:
        out.append("<tr>" + "".join(f'<td class="{c}">{v}</td>' if c else f"<td>{v}</td>"
                                    for v, c in row) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _header(s: dict[str, Any]) -> str:
    items = [("Cycle", _e(s["cycle"])), ("State", f'<span class="{_e(s["state"])}">{_e(s["state"])}</span>'),
             ("Members", f'{_e(s["members_spec"])} ({len(s["members"])})'),
             ("Code version", _e(s["code_version"])),
             ("Checkpoint", f'{_e(s["checkpoint"])} sha256 <code>{_e(s["checkpoint_sha256"])}</code>'
              if s["checkpoint_sha256"] else "not recorded"),
             ("Synthetic", "yes (demo data and model)" if s["synthetic"] else "no"),
             ("Forecast device", _e(s["cost"]["device"])),
             ("Run", f'{_e(s["started"])} to {_e(s["ended"])}'),
             ("Generated", _e(s["generated_at"]))]
    for stage, snap in s["snapshots"].items():
        items.append((f"{stage} store", f'{_e(snap.get("store"))} snapshot <code>{_e(snap.get("snapshot"))}'
                      f'</code> tag {_e(snap.get("tag"))}'))
    if s["quest_sanity"]:
        q = s["quest_sanity"]
        flagged = ", ".join(q["balance_flagged"]) or "none"
        items.append(("quest sanity", f'{_e(q["files"])} files, {_e(q["members"])} members, '
                      f'partial: {_e(q["partial"])}, quintile balance flagged: {_e(flagged)}'))
    return "<table>" + "".join(f"<tr><th>{_e(k)}</th><td>{v}</td></tr>" for k, v in items) + "</table>"


def _rules_table(rules: dict[str, dict[str, Any]]) -> str:
    rows = [[(_e(rule), ""), (_e(r["jobs"]), "n"), (_e(r["done"]), "n"),
             (_e(r["failed"]), "n failed" if r["failed"] else "n"), (_e(r["running"]), "n"),
             (_s(r["total_s"]), "n"), (_s(r["mean_s"]), "n"), (_s(r["max_s"]), "n")]
            for rule, r in rules.items()]
    return _table(["rule", "jobs", "done", "failed", "unfinished", "total s", "mean s", "max s"], rows)


def _members_table(rows_in: list[dict[str, Any]]) -> str:
    rows = [[(_e(r["member"]), "n"), *((_s(r[rule]), "n") for rule in CHAIN), (_s(r["chain_s"]), "n"),
             (_e(r["status"]), _e(r["status"]))] for r in rows_in]
    return _table(["member", *(f"{rule} s" for rule in CHAIN), "chain s", "status"], rows)


def _jobs_table(jobs: list[dict[str, Any]]) -> str:
    rows = []
    for j in jobs:
        b = j["benchmark"] or {}
        rows.append([(_e(j["rule"]), ""), (_e(j["label"]), ""), (_e(j["status"]), _e(j["status"])),
                     (_e(j["started"]), ""), (_s(j["seconds"]), "n"), (_s(b.get("s"), 2), "n"),
                     (_s(b.get("max_rss_mb")), "n"), (_s(b.get("cpu_time"), 2), "n"),
                     (_e(j["log"]), "")])
    return _table(["rule", "job", "status", "started", "seconds", "bench s", "max RSS MB", "CPU s", "log"],
                  rows)


def _bytes_section(b: dict[str, Any]) -> str:
    rows = [[(_e(kind), ""), (_e(b[kind]["receipts"]), "n"), (_bytes(b[kind]["uploaded"]), "n"),
             (_bytes(b[kind]["skipped"]), "n"), (_bytes(b[kind]["total"]), "n")]
            for kind in ("input", "forecast")]
    rows.append([("all", ""), ("", ""), (_bytes(b["uploaded"]), "n"), (_bytes(b["skipped"]), "n"),
                 (_bytes(b["total"]), "n")])
    return (_table(["receipts", "count", "uploaded", "skipped (already there)", "total"], rows)
            + '<p class="note">Skipped objects already held the same checksum and were not sent again.</p>')


def _cost_section(c: dict[str, Any]) -> str:
    cur = _e(c["currency"])
    device = "" if c["device"].startswith("cuda") else (
        f' <span class="note">(forecast ran on {_e(c["device"])}; counted as the GPU stage)</span>')
    rows = [[("GPU-hours", ""), (f'{c["gpu_hours"]:.4f}{device}', "n"),
             (f'{c["gpu_price_per_hour"]:.2f} {cur}/h', "n"),
             (f'{c["gpu_hours"] * c["gpu_price_per_hour"]:.4f} {cur}', "n")],
            [("CPU core-hours", ""), (f'{c["cpu_core_hours"]:.4f}', "n"),
             (f'{c["cpu_price_per_hour"]:.2f} {cur}/h', "n"),
             (f'{c["cpu_core_hours"] * c["cpu_price_per_hour"]:.4f} {cur}', "n")],
            [("estimated cost", ""), ("", ""), ("", ""), (f'<b>{c["estimated"]:.4f} {cur}</b>', "n")]]
    return _table(["", "hours", "price", "cost"], rows) + f'<p class="note">{_e(c["rule"])}</p>'


def _failures_section(failures: list[dict[str, Any]]) -> str:
    if not failures:
        return "<p>None.</p>"
    parts = []
    for f in failures:
        parts.append(f'<h3 class="failed">{_e(f["job"])}</h3><p>{_e(f["error"])} '
                     f'<span class="note">({_e(f["log"])})</span></p>'
                     f'<pre>{_e(chr(10).join(f["excerpt"]))}</pre>')
    return "".join(parts)


def _maps_section(root: Path, maps: list[str]) -> str:
    if not maps:
        return "<p>No maps (the quest stage did not make any).</p>"
    figs = []
    for path in maps:
        name = Path(path).name
        data = base64.b64encode((root / path).read_bytes()).decode("ascii")
        figs.append(f'<figure><img alt="{_e(name)}" src="data:image/png;base64,{data}">'
                    f"<figcaption>{_e(name)}</figcaption></figure>")
    return "".join(figs)


def _timeline_section(s: dict[str, Any]) -> str:
    if not s["timeline"]:
        return '<p class="note">no job has both a start and an end yet</p>'
    busy = s["gpu_busy"]
    if busy is None:
        head = '<p class="note">no forecast job recorded when its member was on the GPU</p>'
    else:
        head = (f'<p class="gpu-busy"><b>GPU busy {100 * busy["fraction_window"]:.1f}%</b> of '
                f'the forecast window ({_s(busy["gpu_seconds"])} s of inference on '
                f'{len(busy["slots"])} slot(s) in {_s(busy["window_seconds"])} s, first forecast '
                f'start to last forecast end); {100 * busy["fraction_run"]:.1f}% of the whole run '
                f'({_s(busy["run_seconds"])} s). In a GPU lane the pale bar is the forecast job, '
                "the solid bar its member's inference: pale without solid is idle GPU.</p>")
    return head + timeline.svg(s["timeline"]) + timeline.legend(s["timeline"])


def render_html(summary: dict[str, Any], root: Path) -> str:
    """The page; the maps are read from under `root`, the run directory they are relative to."""
    s = summary
    unfinished = [j for j in s["jobs"] if j["status"] in ("running", "unknown") and not j["shared"]]
    note = ""
    if unfinished:
        note = (f'<p class="unfinished">{len(unfinished)} job(s) have a start but no end in their log '
                "(still running, or killed): " + ", ".join(_e(f'{j["rule"]} {j["label"] or ""}'.strip())
                                                          for j in unfinished) + "</p>")
    return "".join([
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>ensflow run report {_e(s['cycle'])}</title><style>{_CSS}</style></head><body>",
        f"<h1>ensflow run report: cycle {_e(s['cycle'])}</h1>", _header(s), note,
        "<h2>Timeline</h2>", _timeline_section(s),
        "<h2>Rules</h2>", _rules_table(s["rules"]),
        "<h2>Members</h2>", _members_table(s["member_table"]),
        "<h2>Bytes moved</h2>", _bytes_section(s["bytes"]),
        "<h2>GPU-hours and cost</h2>", _cost_section(s["cost"]),
        "<h2>Failures</h2>", _failures_section(s["failures"]),
        "<h2>Jobs</h2>", _jobs_table(s["jobs"]),
        "<h2>Maps</h2>", _maps_section(root, s["maps"]),
        "</body></html>\n",
    ])


# ------------------------------------------------------------------ writing


def _write_atomic(path: Path, text: str) -> None:
    """Whole or absent: a browser or a copy job never sees half a report."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build(settings: Settings, workdir: Path, output: Path | None = None,
          storage_prefix: str | None = None) -> Path | None:
    """Write report.html and report.json for the cycle; None when the cycle left nothing to read.

    With `storage_prefix` (a cluster run), the jobs' files are read from there.
    """
    workdir = Path(workdir)
    source = workdir
    if storage_prefix:
        source = mirror_from_storage(storage_prefix, settings, workdir)
    record = load_cycle(settings, source)
    if not any(not j.shared for j in record.jobs) and not record.receipts:
        return None
    output = output or workdir / Layout.of(settings).report(settings.cycle)
    summary = summarise(record, settings)
    _write_atomic(Layout.report_numbers(output), json.dumps(summary, indent=1) + "\n")
    _write_atomic(output, render_html(summary, record.workdir))
    return output


def write_run_report(settings: Settings, workdir: Path, storage_prefix: str | None = None) -> Path | None:
    """The hook's entry: write the report, or warn; the run's outcome is never changed by it."""
    try:
        path = build(settings, Path(workdir), storage_prefix=storage_prefix)
    except Exception as exc:  # the report is a by-product; a run must not fail for it
        log.warning("run report for cycle %s not written: %s: %s", settings.cycle,
                    type(exc).__name__, exc)
        return None
    if path is None:
        log.info("no run report for cycle %s: no job has logged anything yet", settings.cycle)
    else:
        log.info("run report: %s", path)
    return path


def main_report(settings: Settings, workdir: Path, output: str | None,
                storage_prefix: str | None = None) -> int:
    """`ensflow report`: write the report (default results/<cycle>/report.html) and print where."""
    workdir = Path(workdir)
    out = None
    if output:
        out = Path(output) if Path(output).is_absolute() else Path.cwd() / output
    path = build(settings, workdir, out, storage_prefix)
    if path is None:
        where = f"{storage_prefix}/" if storage_prefix else f"{workdir}/"
        records = Layout.of(settings).job_logs(settings.cycle)
        raise EnsflowError(f"cycle {settings.cycle}: nothing to report (no job records under "
                           f"{where}{records}, no receipts)")
    print(path)
    return 0
