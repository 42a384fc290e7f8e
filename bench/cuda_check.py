#!/usr/bin/env python3
"""The CUDA check of issue 5, as one script for a GPU machine.

    cargo build --release                                   # CPU binary
    cargo build --release --features cuda --target-dir target-cuda
    python3 bench/cuda_check.py target/release/marrow target-cuda/release/marrow

Builds the demo study with the CPU binary, copies it, runs `marrow infer --all` with
`--backend cpu` on one copy and `--backend cuda` on the other, and compares the stored
predictions image by image (same class; largest probability difference), with the
wall time of each run. Prints one JSON object; exit 1 when a class differs.
"""
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def run(binary, db, *args):
    out = subprocess.run([binary, "--db", str(db), *args], capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"{binary} {' '.join(args)} failed ({out.returncode}):\n{out.stdout}\n{out.stderr}")
    return out.stdout


def main():
    cpu_bin, cuda_bin = sys.argv[1], sys.argv[2]
    tmp = Path(tempfile.mkdtemp(prefix="marrow-cuda-check-"))
    subprocess.run([cpu_bin, "demo", "--no-tui", "--dir", str(tmp / "cpu")], check=True,
                   capture_output=True)
    shutil.copytree(tmp / "cpu", tmp / "cuda")
    result = {}
    preds = {}
    for name, binary in (("cpu", cpu_bin), ("cuda", cuda_bin)):
        db = tmp / name / "demo.db"
        start = time.perf_counter()
        report = json.loads(run(binary, db, "infer", "--all", "--backend", name, "--json"))
        seconds = time.perf_counter() - start
        result[name] = {"backend": report["backend"], "images": report["predicted"],
                        "process_seconds": round(seconds, 3),
                        "job_seconds": round(report["seconds"], 3)}
        rows = json.loads(run(binary, db, "predictions", "--json"))
        preds[name] = {(r["sop_uid"], r["task"]): r for r in rows if r["backend"] == report["backend"]}
    keys = sorted(set(preds["cpu"]) & set(preds["cuda"]))
    differ = [k for k in keys if preds["cpu"][k]["class"] != preds["cuda"][k]["class"]]
    max_diff = max((abs(a - b) for k in keys
                    for a, b in zip(preds["cpu"][k]["probs"], preds["cuda"][k]["probs"])), default=None)
    result["compared"] = len(keys)
    result["class_differs"] = len(differ)
    result["max_probability_difference"] = max_diff
    print(json.dumps(result, indent=2))
    shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(1 if differ or not keys else 0)


if __name__ == "__main__":
    main()
