#!/usr/bin/env python3
"""Benchmarks of the DICOM side, run on the release build:

- `marrow import dicom` of N synthetic radiographs (default 200 DX files of
  2500x2000, 16-bit, Explicit VR Little Endian, about 10 MB each), warm page cache,
  whole process: files/s and MB/s (target: >= 70 files/s)
- the preview pipeline as a whole process: `marrow view FILE --png OUT` at full
  size and at a 320x180 preview (`--width 144`: 2000x2500 fitted into 320x180)
- if pydicom and numpy import (in this Python, or the one named by $BENCH_PYTHON),
  the same preview in Python: read + downscale to fit 320x180 (block mean) +
  window, in-process and as a whole process, and the ratio

Usage: python3 bench/dicom.py [N] [RUNS]     (RUNS imports into fresh studies, default 2)
       BENCH_PYTHON=/path/to/venv/bin/python python3 bench/dicom.py
"""
import os, re, shutil, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/marrow-target"))
env = dict(os.environ, CARGO_TARGET_DIR=target)
env.pop("MARROW_KEY", None)
env.pop("MARROW_DB", None)
env.pop("MARROW_KEY_FILE", None)
subprocess.run(["cargo", "build", "--release", "-q"], cwd=root, env=env, check=True)
marrow = os.path.join(target, "release", "marrow")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 2
rows, cols = 2500, 2000
work = tempfile.mkdtemp(prefix="marrow-bench-dicom-")
images = os.path.join(work, "dicom")
db = os.path.join(work, "s.db")


def run(*args):
    return subprocess.run([marrow, "--db", db, *args], env=env, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def fmt(xs, unit="ms", scale=1000.0):
    xs = sorted(x * scale for x in xs)
    return f"median {statistics.median(xs):.0f} {unit}, min {xs[0]:.0f}, max {xs[-1]:.0f} ({len(xs)} runs)"


try:
    t = time.perf_counter()
    subprocess.run([marrow, "generate", "--dicom", str(n), "--rows", str(rows), "--cols", str(cols),
                    "--out", images], env=env, check=True, stdout=subprocess.DEVNULL)
    gen_s = time.perf_counter() - t
    files = sorted(os.path.join(images, f) for f in os.listdir(images))
    total_bytes = sum(os.path.getsize(f) for f in files)
    print(f"generated {len(files)} files of {cols}x{rows} ({total_bytes / 1e6:.0f} MB) in {gen_s:.1f} s")
    # warm the page cache
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 22):
                pass

    imports = []
    for attempt in range(runs):
        for f in os.listdir(work):
            if f.startswith("s.db"):
                p = os.path.join(work, f)
                shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
        run("init")
        t = time.perf_counter()
        out = run("import", "dicom", images)
        s = time.perf_counter() - t
        imports.append(s)
        summary = out.stdout.strip().splitlines()[0]
        print(f"import {attempt + 1}: {s:.2f} s, {len(files) / s:.0f} files/s, "
              f"{total_bytes / 1e6 / s:.0f} MB/s | {summary}")
    best = min(imports)
    med = statistics.median(imports)
    print(f"import dicom: median {len(files) / med:.0f} files/s, best {len(files) / best:.0f} files/s "
          f"({total_bytes / 1e6 / med:.0f} MB/s median)")

    one = files[0]
    png = os.path.join(work, "out.png")
    full, preview = [], []
    for _ in range(7):
        t = time.perf_counter()
        subprocess.run([marrow, "view", one, "--png", png], env=env, check=True, stdout=subprocess.DEVNULL)
        full.append(time.perf_counter() - t)
        t = time.perf_counter()
        subprocess.run([marrow, "view", one, "--width", "144", "--png", png], env=env, check=True,
                       stdout=subprocess.DEVNULL)
        preview.append(time.perf_counter() - t)
    print(f"marrow view --png, full size {cols}x{rows}: {fmt(full)}")
    print(f"marrow view --png --width 144 (320x180 preview): {fmt(preview)}")

    py = os.environ.get("BENCH_PYTHON", sys.executable)
    snippet = r"""
import sys, time, statistics
t0 = time.perf_counter()
import numpy as np, pydicom
t_import = time.perf_counter() - t0
path, reps = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(reps):
    t = time.perf_counter()
    ds = pydicom.dcmread(path)
    a = ds.pixel_array
    h, w = a.shape
    f = -(-max(h / 180, w / 320) // 1)
    f = int(f)
    small = a[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    c, wd = float(ds.WindowCenter), float(ds.WindowWidth)
    out = np.clip(((small - (c - 0.5)) / (wd - 1) + 0.5) * 255.0, 0, 255).astype(np.uint8)
    times.append(time.perf_counter() - t)
print(f"{statistics.median(times) * 1000:.1f} {min(times) * 1000:.1f} {t_import * 1000:.0f} {out.shape[1]}x{out.shape[0]}")
"""
    probe = subprocess.run([py, "-c", "import numpy, pydicom"], capture_output=True)
    if probe.returncode == 0:
        r = subprocess.run([py, "-c", snippet, one, "7"], check=True, capture_output=True, text=True)
        med_ms, min_ms, import_ms, size = r.stdout.split()
        whole = []
        for _ in range(3):
            t = time.perf_counter()
            subprocess.run([py, "-c", snippet, one, "1"], check=True, capture_output=True)
            whole.append(time.perf_counter() - t)
        mp = statistics.median(preview) * 1000
        print(f"pydicom+numpy read + downscale to {size} + window, in-process: median {float(med_ms):.0f} ms, "
              f"min {float(min_ms):.0f} ms (imports take {import_ms} ms more)")
        print(f"pydicom+numpy as a whole process: {fmt(whole)}")
        print(f"ratio: marrow whole process / pydicom in-process = {mp / float(med_ms):.2f}; "
              f"marrow whole process / pydicom whole process = {mp / (statistics.median(whole) * 1000):.2f}")
    else:
        print(f"pydicom/numpy not importable by {py}: no Python comparison")
finally:
    shutil.rmtree(work, ignore_errors=True)
