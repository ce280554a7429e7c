"""Purging one cycle from a GCS bucket: `ensflow purge --yes` (plan from receipts and a
listing, parallel deletes, then every object checked again) against a plain loop that
deletes the same number of objects one at a time and checks nothing, in the same run, on
the GCS emulator on loopback behind a proxy that adds a round-trip delay (a real bucket
answers in tens of milliseconds; the emulator in well under one). Operational shape:
50 members x (1 pickle + 11 GRIB files).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=50)
    parser.add_argument("--object-kb", type=int, default=256)
    parser.add_argument("--latency-ms", type=float, default=30.0,
                        help="added to every request (0: the bare emulator)")
    args = parser.parse_args()

    from conftest import FaultProxy, free_port, wait_for_port

    from ensflow import receipts
    from ensflow.adapters.storage import Storage
    from ensflow.config import load
    from ensflow.layout import forecast_filename, forecast_windows, input_filename
    from ensflow.ops import retention

    port = free_port()
    emulator = subprocess.Popen(
        [str(Path(sys.executable).parent / "gcp-storage-emulator"), "start", "--host", "127.0.0.1",
         "--port", str(port), "--in-memory", "--default-bucket", "bench"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    tmp = Path(tempfile.mkdtemp(prefix="bench_purge_"))
    proxy = FaultProxy(f"http://127.0.0.1:{port}", delay_s=args.latency_ms / 1000)
    stack = contextlib.ExitStack()
    try:
        wait_for_port(port)
        os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
        settings = load(REPO / "config/config.yaml", {
            "members": f"1-{args.members}", "bucket": "gs://bench/cycles",
            "results": str(tmp / "results"), "scratch": str(tmp / "scratch")})
        storage = Storage.from_settings(settings)
        cycle = settings.cycle
        blob = tmp / "blob"
        blob.write_bytes(os.urandom(args.object_kb * 1024))
        windows = forecast_windows(792, 72)

        def fill(prefix: str) -> list[str]:
            urls = []
            for m in settings.members:
                urls.append(f"{prefix}/{cycle}/input/{input_filename(m)}")
                urls += [f"{prefix}/{cycle}/forecasts/{forecast_filename(cycle, m, a, b)}"
                         for a, b in windows]
            storage.put_files([(blob, u) for u in urls], parallel=16)
            return urls

        urls = fill("gs://bench/cycles")
        receipt_dir = tmp / "results" / cycle / "receipts"
        per_member = 1 + len(windows)
        for i, m in enumerate(settings.members):
            mine = urls[i * per_member:(i + 1) * per_member]
            size = blob.stat().st_size
            receipts.write(receipt_dir / f"input_member_{m:03d}.json",
                           {"cycle": cycle, "member": m, "object": mine[0], "size": size})
            receipts.write(receipt_dir / f"forecast_member_{m:03d}.json", {
                "cycle": cycle, "member": m, "bytes": size * (per_member - 1),
                "objects": [{"url": u, "size": size, "crc32c": None, "skipped": False}
                            for u in mine[1:]]})
        baseline_urls = fill("gs://bench/baseline")
        stack.enter_context(proxy)
        os.environ["STORAGE_EMULATOR_HOST"] = proxy.url  # deletes and checks see the latency
        storage = Storage.from_settings(settings)  # new clients, through the proxy
        print(f"{len(urls)} objects of {args.object_kb} KB per cycle on the GCS emulator, "
              f"+{args.latency_ms:.0f} ms per request", flush=True)

        t = time.perf_counter()
        for u in baseline_urls:
            storage.delete(u)
        t_loop = time.perf_counter() - t
        print(f"baseline, one delete at a time, no check: {t_loop:.2f} s "
              f"({len(baseline_urls) / t_loop:.0f} objects/s)")

        t = time.perf_counter()
        plan = retention.plan_purge(settings, tmp)
        t_plan = time.perf_counter() - t
        result = retention.execute_purge(plan)
        t_total = time.perf_counter() - t
        assert result.complete and len(result.freed) == len(plan.items), result.remaining
        assert not storage.list_prefix(f"gs://bench/cycles/{cycle}/")
        print(f"ensflow purge: plan {t_plan:.2f} s, delete + verify + local {t_total - t_plan:.2f} s, "
              f"total {t_total:.2f} s ({len(plan.bucket_items) / t_total:.0f} objects/s, "
              f"{result.freed_bytes / 1e6:.1f} MB verified freed)")
        print(f"ratio baseline / ensflow: {t_loop / t_total:.2f}x "
              "(ensflow also lists, plans and checks every object again)")
        print(f"result: purge_seconds {t_total:.2f} s baseline {t_loop:.2f} "
              f"ratio {t_loop / t_total:.2f}")
    finally:
        stack.close()
        emulator.terminate()
        emulator.wait(timeout=10)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
