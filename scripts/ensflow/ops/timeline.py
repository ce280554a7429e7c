"""When each job ran, and how much of the time the GPU computed: what a run cost in idle GPU.

A GPU slot's lane shows each forecast job as a pale bar (handed over, loading, waiting) with
the member's inference solid on top; CPU jobs are packed into as few lanes as overlap needs.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import html
from typing import Any

from ensflow.ops.run_record import Job

# Rules in the order a cycle meets them; a rule not listed gets a colour from its name.
RULE_COLOURS = {
    "forecast": "#1f5fbf", "fetch_input": "#2ca02c", "prepare_input": "#8fbf3f",
    "upload": "#ff7f0e", "preflight": "#7f7f7f", "checkpoint_record": "#bcbd22",
    "demo_mirror": "#c7c7c7", "demo_checkpoint": "#c7c7c7", "cgan_batch": "#9467bd",
    "cgan_setup": "#c5b0d5", "cgan_publish": "#6b3fa0",
    "cgan_netcdf": "#e377c2", "quest_member_fields": "#17becf", "quest_member": "#17becf",
    "quest_setup": "#9edae5", "quest_publish": "#0f7f8f", "quest_products": "#d62728",
    "quest_maps": "#ff9896", "quest_climatology": "#8c564b", "demo_climatology": "#c49c94",
    "quest_upload_prepare": "#e7969c",
}
IDLE_TINT = 0.72  # how far a forecast job's own bar is paled towards white


def colour(rule: str) -> str:
    if rule in RULE_COLOURS:
        return RULE_COLOURS[rule]
    return "#" + hashlib.sha1(rule.encode()).hexdigest()[:6]


def _pale(hex_colour: str, t: float = IDLE_TINT) -> str:
    rgb = [int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)]
    return "#" + "".join(f"{round(c + (255 - c) * t):02x}" for c in rgb)


def _union_seconds(spans: list[tuple[dt.datetime, dt.datetime]]) -> float:
    total, end = 0.0, None
    for a, b in sorted(spans):
        if end is None or a > end:
            total += (b - a).total_seconds()
            end = b
        elif b > end:
            total += (b - end).total_seconds()
            end = b
    return total


def _timed(jobs: list[Job]) -> list[Job]:
    return [j for j in jobs if not j.shared and j.started and j.ended]


def gpu_busy(jobs: list[Job]) -> dict[str, Any] | None:
    """GPU seconds ÷ slot-seconds, over the forecast window and over the whole run.

    The forecast window runs from the first forecast job's start to the last one's end:
    the time the cycle held its GPUs. None when no forecast job recorded its inference.
    """
    ran = [j for j in _timed(jobs) if j.rule == "forecast" and j.gpu_slot and j.inference]
    if not ran:
        return None
    slots = sorted({j.gpu_slot for j in ran if j.gpu_slot})
    gpu_s = sum(_union_seconds([j.inference for j in ran if j.gpu_slot == s and j.inference])
                for s in slots)
    window = (max(j.ended for j in ran if j.ended)
              - min(j.started for j in ran if j.started)).total_seconds()
    timed = _timed(jobs)
    run = (max(j.ended for j in timed if j.ended)
           - min(j.started for j in timed if j.started)).total_seconds()
    return {"slots": slots, "gpu_seconds": round(gpu_s, 3),
            "window_seconds": round(window, 3), "run_seconds": round(run, 3),
            "fraction_window": round(gpu_s / (len(slots) * window), 4) if window else None,
            "fraction_run": round(gpu_s / (len(slots) * run), 4) if run else None}


def lanes(jobs: list[Job]) -> dict[str, Any] | None:
    """Bars in seconds from the run's first start: GPU slot lanes, then packed CPU lanes."""
    timed = _timed(jobs)
    if not timed:
        return None
    t0 = min(j.started for j in timed if j.started)

    def bar(j: Job) -> dict[str, Any]:
        assert j.started and j.ended
        out = {"rule": j.rule, "name": j.name, "status": j.status,
               "start": (j.started - t0).total_seconds(), "end": (j.ended - t0).total_seconds()}
        if j.inference:
            out["gpu"] = [(t - t0).total_seconds() for t in j.inference]
        return out

    result: list[dict[str, Any]] = []
    on_gpu = [j for j in timed if j.rule == "forecast" and j.gpu_slot]
    for slot in sorted({j.gpu_slot for j in on_gpu if j.gpu_slot}):
        result.append({"name": "model on CPU" if slot == "cpu" else f"GPU {slot}", "gpu": True,
                       "bars": [bar(j) for j in on_gpu if j.gpu_slot == slot]})
    cpu_lanes: list[list[dict[str, Any]]] = []
    for j in sorted((j for j in timed if j not in on_gpu), key=lambda j: j.started or t0):
        b = bar(j)
        lane = next((ln for ln in cpu_lanes if ln[-1]["end"] <= b["start"]), None)
        if lane is None:
            cpu_lanes.append([b])
        else:
            lane.append(b)
    result += [{"name": f"CPU {i}", "gpu": False, "bars": ln}
               for i, ln in enumerate(cpu_lanes, 1)]
    span = max(b["end"] for ln in result for b in ln["bars"])
    return {"t0": t0.isoformat(timespec="seconds"), "seconds": span, "lanes": result}


def _tick_step(span: float) -> float:
    for step in (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200):
        if span / step <= 12:
            return step
    return 14400


def svg(timeline: dict[str, Any], width: int = 1100) -> str:
    """The timeline as inline SVG: a row per lane, a bar per job coloured by rule."""
    left, top, row, gap = 120, 22, 18, 4
    span = max(timeline["seconds"], 1e-6)
    scale = (width - left - 10) / span
    n = len(timeline["lanes"])
    height = top + n * (row + gap) + 6
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{width}" '
             f'height="{height}" font-family="sans-serif" font-size="11">']
    step = _tick_step(span)
    t = 0.0
    while t <= span:
        x = left + t * scale
        label = f"{t / 60:g} min" if step >= 60 else f"{t:g} s"
        parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{height}" '
                     f'stroke="#e4e4e4"/><text x="{x:.1f}" y="{top - 8}" fill="#555" '
                     f'text-anchor="middle">{label}</text>')
        t += step
    for i, lane in enumerate(timeline["lanes"]):
        y = top + i * (row + gap)
        weight = "bold" if lane["gpu"] else "normal"
        parts.append(f'<text x="{left - 8}" y="{y + row - 5}" text-anchor="end" '
                     f'font-weight="{weight}">{html.escape(lane["name"])}</text>')
        for b in lane["bars"]:
            c = colour(b["rule"])
            x, w = left + b["start"] * scale, max(1.0, (b["end"] - b["start"]) * scale)
            fill = _pale(c) if "gpu" in b else c
            tip = html.escape(f'{b["name"]}: {b["end"] - b["start"]:.1f} s, {b["status"]}')
            parts.append(f'<rect x="{x:.1f}" y="{y}" width="{w:.1f}" height="{row}" '
                         f'fill="{fill}"><title>{tip}</title></rect>')
            if "gpu" in b:
                gx = left + b["gpu"][0] * scale
                gw = max(1.0, (b["gpu"][1] - b["gpu"][0]) * scale)
                gtip = html.escape(f'{b["name"]}: on the GPU {b["gpu"][1] - b["gpu"][0]:.1f} s')
                parts.append(f'<rect x="{gx:.1f}" y="{y}" width="{gw:.1f}" height="{row}" '
                             f'fill="{c}"><title>{gtip}</title></rect>')
    parts.append("</svg>")
    return "".join(parts)


def legend(timeline: dict[str, Any]) -> str:
    rules = dict.fromkeys(b["rule"] for ln in timeline["lanes"] for b in ln["bars"])
    items = [f'<span style="display:inline-block;width:.9em;height:.9em;background:'
             f'{colour(r)};margin:0 .3em 0 .9em;vertical-align:middle"></span>{html.escape(r)}'
             for r in rules]
    return '<p class="note">' + "".join(items) + "</p>"
