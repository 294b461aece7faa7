"""Memory of a training per byte of its file, and the speed of a dataset profile.

Calibrates mlservice.training.datasets.MEMORY_PER_BYTE and RUNTIME_BYTES (the `dataset_too_large` refusal) and
measures mlservice.dataset_profile's throughput.

Memory. Each run trains on one generated file in a fresh process (moto in that process, the file put in its
bucket, then `trainer.train_model` with a `{"s3_key"}` source, as TrainFunction does), while a thread samples the
proportional set size (PSS) of the process and of the child the fit is forked into, every 20 ms: PSS counts a
page shared by the two copy-on-write once in all, as the function's memory limit does. The factor is the slope
of peak memory over the file's size between two sizes (so the runtime's own memory is the intercept), per
format. The file is a realistic table: a housing-like CSV of 12 columns (prices with 2 decimals, counts, ratios,
a postcode, two categories of 30 and 4 values, a date, a target), about 6.5 bytes per cell; JSON Lines holds
the same rows as objects. Shorter cells cost more per byte (each parsed cell is a Python string of ≥ 50 bytes):
`--narrow` measures a table of one-digit cells, the worst case.

Profile. `dataset_profile.profile` over the same files from memory (no network), in MB of file per second of
one CPU.

    .venv/bin/python benchmarks/dataset_memory.py            # about 2 minutes on 2 cores
    .venv/bin/python benchmarks/dataset_memory.py --narrow   # also the worst case
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import math
import os
import random
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "layers" / "mlservice")]
MiB = 1024 * 1024
CITIES = [f"city_{i:02d}" for i in range(30)]
KINDS = ["flat", "house", "terraced", "studio"]


def housing_rows(n: int, seed: int = 0) -> tuple[list[str], list[list[object]]]:
    rng = random.Random(seed)
    columns = ["area_m2", "rooms", "floor", "year", "lat", "lon", "postcode", "city", "kind", "sold", "ratio", "price"]
    rows = []
    for _ in range(n):
        area = round(rng.uniform(20, 250), 1)
        rooms = rng.randint(1, 8)
        rows.append(
            [
                area,
                rooms,
                rng.randint(0, 20),
                rng.randint(1900, 2025),
                round(rng.uniform(58.0, 71.0), 4),
                round(rng.uniform(4.5, 31.0), 4),
                rng.randint(1000, 9999),
                rng.choice(CITIES),
                rng.choice(KINDS),
                f"2026-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
                round(rng.random(), 3),
                round(area * 42.5 + rooms * 900 + rng.gauss(0, 500), 2),
            ]
        )
    return columns, rows


def narrow_rows(n: int, seed: int = 0) -> tuple[list[str], list[list[object]]]:
    rng = random.Random(seed)
    columns = [f"d{i}" for i in range(11)] + ["y"]
    rows = [[rng.randint(0, 9) for _ in range(11)] + [rng.randint(0, 1)] for _ in range(n)]
    return columns, rows


def render(columns: list[str], rows: list[list[object]], data_format: str) -> bytes:
    if data_format == "csv":
        lines = [",".join(columns)] + [",".join(str(v) for v in row) for row in rows]
        return ("\n".join(lines) + "\n").encode()
    return ("\n".join(json.dumps(dict(zip(columns, row, strict=True))) for row in rows) + "\n").encode()


# ---------------------------------------------------------------- one training, in a process of its own

CHILD = r"""
import json, os, sys, threading, time
sys.path[:0] = [{root!r}, {layer!r}]
os.environ.update(AWS_DEFAULT_REGION="us-east-1", AWS_ACCESS_KEY_ID="t", AWS_SECRET_ACCESS_KEY="t",
                  MODEL_BUCKET="memory-bench", POWERTOOLS_TRACE_DISABLED="true", TRAINING_BUDGET_SECONDS="100000",
                  TRAINING_DEADLINE_SECONDS="100000", MAX_DATASET_BYTES=str(10**10), MAX_TRAIN_CELLS=str(10**9),
                  AWS_LAMBDA_FUNCTION_MEMORY_SIZE="1000000")

def pss(pid):
    try:
        with open(f"/proc/{{pid}}/smaps_rollup") as f:
            for line in f:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        return 0
    return 0

def tree(pid):
    found = [pid]
    try:
        for task in os.listdir(f"/proc/{{pid}}/task"):
            with open(f"/proc/{{pid}}/task/{{task}}/children") as f:
                for child in f.read().split():
                    found.extend(tree(int(child)))
    except OSError:
        pass
    return found

peak = [0]
stop = threading.Event()
def sample():
    while not stop.is_set():
        peak[0] = max(peak[0], sum(pss(p) for p in tree(os.getpid())))
        time.sleep(0.02)

from moto import mock_aws
with mock_aws():
    import boto3
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="memory-bench")
    from mlservice.training.trainer import train_model
    import sklearn.linear_model, sklearn.ensemble  # the runtime, before the data
    data = open({path!r}, "rb").read()
    s3.put_object(Bucket="memory-bench", Key="datasets/bench.{suffix}", Body=data)
    del data
    import gc; gc.collect()
    baseline = sum(pss(p) for p in tree(os.getpid()))
    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    started = time.perf_counter()
    trained = train_model({{"algorithm": {algorithm!r}, "target": {target!r}, "features": {features!r},
                           "data": {{"s3_key": "datasets/bench.{suffix}"}}, **{extra}}})
    seconds = time.perf_counter() - started
    stop.set(); thread.join()
    print(json.dumps({{"baseline": baseline, "peak": peak[0], "seconds": seconds,
                      "rows": trained.metadata["training"]["rows"]}}))
"""


def measure(path: Path, suffix: str, algorithm: str, target: str, features: list[str], extra: dict) -> dict:
    script = CHILD.format(
        root=str(ROOT),
        layer=str(ROOT / "layers" / "mlservice"),
        path=str(path),
        suffix=suffix,
        algorithm=algorithm,
        target=target,
        features=features,
        extra=json.dumps(extra),
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=1800)
    if result.returncode:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def profile_speed(data: bytes, data_format: str, gzipped: bool) -> tuple[float, float]:
    """Seconds of CPU and of wall time to profile the file from memory."""
    from mlservice import dataset_profile

    cpu, wall = time.process_time(), time.perf_counter()
    found = dataset_profile.profile(
        io.BytesIO(data), data_format, gzipped, min_group=5, max_columns=10_000, deadline=math.inf
    )
    assert found["status"] == "uploaded", found
    return time.process_time() - cpu, time.perf_counter() - wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, nargs=2, default=[150_000, 450_000], help="the two sizes, in rows")
    parser.add_argument("--narrow", action="store_true", help="also the worst case: one-digit cells")
    parser.add_argument("--algorithms", nargs="+", default=["ridge", "random_forest"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "dataset_memory.json")
    args = parser.parse_args()
    os.environ.setdefault("MODEL_BUCKET", "memory-bench")
    tables = [("housing", housing_rows, "price")] + ([("narrow", narrow_rows, "y")] if args.narrow else [])
    results: dict = {"memory": [], "profile": []}
    work = ROOT / "benchmarks" / "results"
    work.mkdir(parents=True, exist_ok=True)
    for table, make, target in tables:
        for data_format in ("csv", "jsonl"):
            points = []
            for n in args.rows:
                columns, rows = make(n)
                data = render(columns, rows, data_format)
                features = [c for c in columns if c not in (target, "sold")]
                path = work / f"bench.{data_format}"
                path.write_bytes(data)
                cpu, wall = profile_speed(data, data_format, False)
                packed = gzip.compress(data, compresslevel=6)
                gz_cpu, _ = profile_speed(packed, data_format, True)
                speed = {
                    "table": table,
                    "format": data_format,
                    "rows": n,
                    "bytes": len(data),
                    "gzip_ratio": round(len(data) / len(packed), 2),
                    "mb_per_cpu_s": round(len(data) / MiB / cpu, 2),
                    "mb_per_cpu_s_gzip": round(len(data) / MiB / gz_cpu, 2),
                    "wall_s": round(wall, 2),
                }
                results["profile"].append(speed)
                print("profile", speed, flush=True)
                for algorithm in args.algorithms:
                    extra = (
                        {"hyperparameters": {"n_estimators": 10, "max_depth": 8}}
                        if algorithm == "random_forest"
                        else {}
                    )
                    found = measure(path, data_format, algorithm, target, features, extra)
                    point = {"table": table, "format": data_format, "algorithm": algorithm, "bytes": len(data), **found}
                    points.append(point)
                    results["memory"].append(point)
                    print(
                        f"memory {table} {data_format} {algorithm} {len(data) / MiB:.1f} MiB: peak "
                        f"{found['peak'] / MiB:.0f} MiB (baseline {found['baseline'] / MiB:.0f} MiB), "
                        f"{(found['peak'] - found['baseline']) / len(data):.1f}× the file, {found['seconds']:.1f} s",
                        flush=True,
                    )
                path.unlink()
            for algorithm in args.algorithms:
                small, large = [p for p in points if p["algorithm"] == algorithm]
                slope = (large["peak"] - small["peak"]) / (large["bytes"] - small["bytes"])
                intercept = small["peak"] - slope * small["bytes"]
                summary = {"table": table, "format": data_format, "algorithm": algorithm, "slope": round(slope, 2)}
                summary["intercept_mib"] = round(intercept / MiB)
                results.setdefault("factors", []).append(summary)
                print("factor", summary, flush=True)
    args.out.write_text(json.dumps(results, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
