"""The cGAN stage at operational shape: 51 members × 12 variables × 9 steps at 0.25° global,
CCSDS, served by a local S3 server (moto), end to end to the NetCDF.

Baseline, same run: the decode-bound limit, messages ÷ (cores × the single-core
gribberish decode + cut rate measured beside each run); the result is end to end ÷ that
limit (medians over --runs). Also, once: one range request at a time, decoded in-process.

Servers: `nginx` (default; Debian's nginx serves the bucket's objects over the same anonymous
path-style GET/Range protocol as S3, fast enough that ensflow is what is measured) or
`moto` (the S3 server the tests use; pure Python, it serves ~20 MB/s here and becomes the
bottleneck).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))
sys.path.insert(0, str(REPO / "tests"))


def make_mirror(root: Path, plan, bucket: str, s3) -> int:
    """Write and upload one object per step: every member of every variable."""
    import eccodes
    from ecmwf.opendata.grib import grib_index

    from ensflow.demo import data as demo_data

    lats, lons = demo_data.grid_coordinates(0.25)
    count = 0
    for step in plan.all_steps:
        (url,) = plan.objects(step)  # before IFS 50r1 the control is in enfo too
        key = url.removeprefix(plan.layout.root + "/")
        path = root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            for var in plan.variables:
                if step not in plan.fetch_steps(var):
                    continue
                values = demo_data.synthetic_values(var.param, var.levelist, lats, lons, 1,
                                                    plan.base + dt.timedelta(hours=step), step)
                msg = demo_data._encode(plan.product(1), var.field, plan.base, step, 0.25, values)
                for member in plan.members:  # same values, member set in the header
                    h = eccodes.codes_new_from_message(msg)
                    eccodes.codes_set(h, "marsType", "cf" if member == 0 else "pf")
                    eccodes.codes_set(h, "number", member)
                    f.write(eccodes.codes_get_message(h))
                    eccodes.codes_release(h)
                    count += 1
        index = path.with_suffix(".index")
        index.write_text("".join(json.dumps(e) + "\n" for e in grib_index(str(path))))
        if s3 is not None:
            for p in (path, index):
                s3.upload_file(str(p), bucket, str(p.relative_to(root)))
        print(f"  wrote {key}: {path.stat().st_size / 1e6:.0f} MB", flush=True)
    return count


def single_core_decode_rate(root: Path, plan, n: int = 150) -> float:
    from ensflow.adapters import opendata
    from ensflow.adapters.storage import Storage
    from ensflow.stages import cgan

    files = Storage()
    (url,) = plan.objects(plan.steps[0])
    msgs = opendata.load_index(files, f"file://{root}/" + url.removeprefix(plan.layout.root + "/"))[:n]
    data = opendata.fetch(files, msgs)
    t0 = time.perf_counter()
    for m, buf in zip(msgs, data, strict=True):
        cgan.decode_region((buf, plan.region, m.number, "bench"))
    return n / (time.perf_counter() - t0)


def spread(xs: list[float]) -> str:
    return f"{statistics.median(xs):.3f} (range {min(xs):.3f}-{max(xs):.3f})"


def baseline(plan, index_dir: Path, storage) -> tuple[float, int]:
    """Naive: one range request at a time, decode in this process."""
    from ensflow import receipts
    from ensflow.stages import cgan

    t0 = time.perf_counter()
    n = 0
    for p in sorted(index_dir.glob("step_*.json")):
        for obj in receipts.read(p)["objects"]:
            for e in obj["messages"]:
                buf = storage.read_ranges(obj["url"], [(e["offset"], e["length"])])[0]
                cgan.decode_region((buf, plan.region, e["member"], "baseline"))
                n += 1
    return time.perf_counter() - t0, n


def start_nginx(tmp: Path, port: int, bucket: str) -> subprocess.Popen[bytes]:
    """Static files over HTTP with Range support: an anonymous, path-style S3 read endpoint."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx not found: apt-get install nginx-light (or use --server moto)")
    (tmp / "www" / bucket).mkdir(parents=True)
    conf = tmp / "nginx.conf"
    conf.write_text(f"""daemon off; worker_processes 1; pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log;
events {{ worker_connections 256; }}
http {{ access_log off; sendfile on; default_type application/octet-stream;
  client_body_temp_path {tmp}; proxy_temp_path {tmp}; fastcgi_temp_path {tmp};
  uwsgi_temp_path {tmp}; scgi_temp_path {tmp};
  server {{ listen 127.0.0.1:{port}; root {tmp}/www; }} }}
""")
    return subprocess.Popen([nginx, "-c", str(conf), "-p", str(tmp)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-baseline", action="store_true")
    parser.add_argument("--server", choices=["nginx", "moto"], default="nginx")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--decode-workers", type=int, default=1,
                        help="cgan.decode_workers: cores per batch job. 1 runs a batch per core "
                             "side by side, as config/operational.yaml's 2 does on the gpu "
                             "profile's 8 cores; the cores' count runs one batch at a time")
    args = parser.parse_args()
    import boto3
    import yaml
    from conftest import BIN, copy_workflow, free_port, wait_for_port

    from ensflow.adapters.storage import Storage
    from ensflow.config import load
    from ensflow.science.cgan_plan import plan_from

    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    tmp = Path(tempfile.mkdtemp(prefix="bench_cgan_"))
    bucket = "ecmwf-forecasts"
    if args.server == "moto":
        server = subprocess.Popen([str(BIN / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    else:
        server = start_nginx(tmp, port, bucket)
    try:
        wait_for_port(port)
        if args.server == "moto":
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name="eu-central-1",
                              aws_access_key_id="test", aws_secret_access_key="test")
            s3.create_bucket(Bucket=bucket,
                             CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
            s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps({
                "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Principal": "*",
                                                        "Action": ["s3:GetObject"],
                                                        "Resource": [f"arn:aws:s3:::{bucket}/*"]}]}))
        else:
            s3 = None
        overrides = {"synthetic": False, "quest": {"enabled": False},
                     "opendata": {"root": f"s3://{bucket}", "endpoint_url": endpoint},
                     "cgan": {"store": "file://stores/cgan.icechunk", "members": "0-50",
                              "members_per_batch": 6, "decode_workers": args.decode_workers}}
        plan = plan_from(load(REPO / "config/config.yaml", overrides))
        print(f"making the mirror: {len(plan.members)} members x {len(plan.variables)} variables "
              f"x {len(plan.steps)} steps (+ step {plan.previous_step} for accumulations)", flush=True)
        t0 = time.perf_counter()
        count = make_mirror(tmp / "www" / bucket, plan, bucket, s3)
        print(f"  {count} messages in {time.perf_counter() - t0:.0f}s")

        cores = len(os.sched_getaffinity(0))
        walls, limits, batch_walls = [], [], []
        for run in range(args.runs):
            rate1 = single_core_decode_rate(tmp / "www" / bucket, plan)
            limits.append(count / (cores * rate1))
            work = copy_workflow(tmp / f"wf{run}")
            (work / "bench.yaml").write_text(yaml.safe_dump(overrides))
            env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
            t0 = time.perf_counter()
            done = subprocess.run([str(BIN / "snakemake"), "--profile", "profiles/demo",
                                   "cgan", "--configfile", "bench.yaml", "-q"],
                                  cwd=work, env=env, capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if done.returncode:
                print(done.stderr[-3000:])
                raise SystemExit("the stage failed")
            batch_walls.append(sum(
                float(next(iter(p.read_text().splitlines()[1:])).split("\t")[0])
                for p in (work / "benchmarks").rglob("cgan_batch/*.tsv")))
            print(f"run {run + 1}: end to end {walls[-1]:.1f}s; decode-bound limit "
                  f"{limits[-1]:.1f}s ({count} messages / ({cores} cores x {rate1:.1f} msg/s "
                  f"single-core gribberish decode + cut)); ratio {walls[-1] / limits[-1]:.3f}; "
                  f"batch jobs {batch_walls[-1]:.1f}s", flush=True)
        ratios = [w / lim for w, lim in zip(walls, limits, strict=True)]
        print(f"\nensflow cgan (Snakemake, {cores} cores, {args.server}, decode_workers "
              f"{args.decode_workers}), {args.runs} run(s): {count} messages")
        print(f"  end to end          : {spread(walls)} s")
        print(f"  decode-bound limit  : {spread(limits)} s")
        print(f"  end to end / limit  : {spread(ratios)}")
        if not args.skip_baseline:
            storage = Storage.from_settings(load(REPO / "config/config.yaml", overrides))
            base_s, n = baseline(plan, work / "results/20251127_0000/cgan/index", storage)
            print(f"  naive (one request at a time, decode in-process): {n} messages, "
                  f"{base_s:.1f}s, {n / base_s:.1f} msg/s; ensflow "
                  f"{base_s / statistics.median(walls):.1f}x faster end to end")
        print(f"result: cgan_end_to_end {statistics.median(walls):.1f} s baseline "
              f"{statistics.median(limits):.1f} ratio {statistics.median(ratios):.3f}")
    finally:
        server.terminate()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
