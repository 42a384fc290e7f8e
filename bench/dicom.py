#!/usr/bin/env python3
"""Benchmarks of the DICOM side, run on the release build, each beside its peer in the
same run (the development machine is shared and noisy: compare within a run only):

1. `marrow import dicom` of N synthetic radiographs (default 200 DX files of
   2500x2000, 16-bit, Explicit VR Little Endian, about 10 MB each), warm page cache,
   whole process, RUNS times into fresh studies: files/s (target: >= 70 files/s).
2. Header-only scanning of SCAN files: a re-run of `marrow import dicom` over files it
   has already imported (it reads each file up to its Pixel Data and skips it) against
   `dcmdump -q +sb 7fe0,0010` (stop before the Pixel Data) over the same paths in one
   process (`find ... -exec dcmdump ... {} +`). The SCAN paths are hard links, COPIES
   per generated file, so 2,000 paths cost 2 GB of disk, not 20.
3. `marrow view FILE --png OUT` (full size, the file's first window) as a whole
   process against dcmtk's `dcm2pnm +on +Wi 1 FILE OUT` (PNG, first window), on a
   generated DX and on pydicom-data's RG1_UNCI.dcm: median of 7 each.
4. The preview pipeline (read, decode, window, downscale to fit 320x180) on
   pydicom-data's RG1_UNCI.dcm, RG3_UNCI.dcm and RG1_J2KR.dcm (JPEG 2000 lossless):
   marrow in-process (examples/dicom_preview.rs, built with --release: the library
   with the `marrow` binary's allocator; it also prints one call's heap allocations)
   and as a whole process (`marrow view --png --width W`), against pydicom + numpy
   in-process (pylibjpeg-openjpeg for the JPEG 2000 file).

Needs: dcmtk (`apt-get install dcmtk`) for 2 and 3; a Python with pydicom, numpy,
pylibjpeg, pylibjpeg-openjpeg and pydicom-data (BENCH_PYTHON, default the conformance
venv ~/.cache/marrow-conformance/venv) for 3 (RG1) and 4. What is missing is skipped
with a note.

Usage: python3 bench/dicom.py [N] [RUNS] [SCAN]     (defaults 200 3 2000)
       BENCH_ONLY=preview [BENCH_REPEAT=K] python3 bench/dicom.py
           figure 4 alone (K times over, default 1)
"""
import glob, os, shutil, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/marrow-target"))
env = dict(os.environ, CARGO_TARGET_DIR=target)
for k in ("MARROW_KEY", "MARROW_DB", "MARROW_KEY_FILE"):
    env.pop(k, None)
# BENCH_MARROW / BENCH_TIMING_BIN: an already built binary and timing binary
# (examples/dicom_preview.rs; the release build of the shared target can take minutes
# while others build).
marrow = os.environ.get("BENCH_MARROW")
if not marrow:
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=root, env=env, check=True)
    marrow = os.path.join(target, "release", "marrow")
timing = os.environ.get("BENCH_TIMING_BIN")
if not timing:
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "dicom_preview"],
                   cwd=root, env=env, check=True)
    timing = os.path.join(target, "release", "examples", "dicom_preview")
only_preview = os.environ.get("BENCH_ONLY") == "preview"
n = int(sys.argv[1]) if len(sys.argv) > 1 else 200
runs = int(sys.argv[2]) if len(sys.argv) > 2 else 3
scan = int(sys.argv[3]) if len(sys.argv) > 3 else 2000
rows, cols = 2500, 2000
venv_py = os.path.expanduser("~/.cache/marrow-conformance/venv/bin/python")
py = os.environ.get("BENCH_PYTHON", venv_py if os.path.exists(venv_py) else sys.executable)
work = tempfile.mkdtemp(prefix="marrow-bench-dicom-")
images = os.path.join(work, "dicom")
db = os.path.join(work, "s.db")
png = os.path.join(work, "out.png")


def run(*args):
    return subprocess.run([marrow, "--db", db, *args], env=env, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def timed(cmd, reps=7, **kw):
    """Wall-clock seconds of `cmd` as a whole process, `reps` times."""
    out = []
    for _ in range(reps):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)
        out.append(time.perf_counter() - t)
    return out


def med(xs):
    return statistics.median(xs)


def ms(xs):
    xs = sorted(x * 1000 for x in xs)
    return f"median {statistics.median(xs):.1f} ms (min {xs[0]:.1f}, max {xs[-1]:.1f}, {len(xs)} runs)"


def fresh_study():
    for f in os.listdir(work):
        if f.startswith("s.db"):
            p = os.path.join(work, f)
            shutil.rmtree(p) if os.path.isdir(p) else os.remove(p)
    run("init")


def figures_1_and_2():
    global files
    t = time.perf_counter()
    subprocess.run([marrow, "generate", "--dicom", str(n), "--rows", str(rows), "--cols", str(cols),
                    "--out", images], env=env, check=True, stdout=subprocess.DEVNULL)
    gen_s = time.perf_counter() - t
    files = sorted(os.path.join(images, f) for f in os.listdir(images))
    total_bytes = sum(os.path.getsize(f) for f in files)
    print(f"generated {len(files)} files of {cols}x{rows} ({total_bytes / 1e6:.0f} MB) in {gen_s:.1f} s")
    for f in files:  # warm the page cache
        with open(f, "rb") as fh:
            while fh.read(1 << 22):
                pass

    # 1. import
    print("\n1. marrow import dicom (whole process, warm cache, fresh study each run)")
    imports = []
    for attempt in range(runs):
        fresh_study()
        t = time.perf_counter()
        out = run("import", "dicom", images)
        s = time.perf_counter() - t
        imports.append(s)
        summary = out.stdout.strip().splitlines()[0]
        print(f"  run {attempt + 1}: {s:.2f} s, {len(files) / s:.0f} files/s, "
              f"{total_bytes / 1e6 / s:.0f} MB/s | {summary}")
    print(f"  import dicom: median {len(files) / med(imports):.0f} files/s, best "
          f"{len(files) / min(imports):.0f}, worst {len(files) / max(imports):.0f} files/s "
          f"(target >= 70)")

    # 2. header-only scan
    dcmdump = shutil.which("dcmdump")
    print(f"\n2. header-only scan of {scan} paths ({len(files)} files x {-(-scan // len(files))} hard links)")
    scandir = os.path.join(work, "scan")
    paths = 0
    for c in range(-(-scan // len(files))):
        d = os.path.join(scandir, f"c{c:02}")
        os.makedirs(d)
        for f in files:
            if paths < scan:
                os.link(f, os.path.join(d, os.path.basename(f)))
                paths += 1
    fresh_study()
    run("import", "dicom", images)  # every instance is now already imported
    m_scan, d_scan = [], []
    for _ in range(max(runs, 3)):
        m_scan += timed([marrow, "--db", db, "import", "dicom", scandir], 1, env=env)
        if dcmdump:
            d_scan += timed(["sh", "-c", f"find '{scandir}' -type f -exec dcmdump -q +sb 7fe0,0010 {{}} + > /dev/null"], 1)
    out = run("import", "dicom", scandir).stdout.strip().splitlines()[0]
    print(f"  marrow import dicom (re-run, all already imported): {ms(m_scan)}, "
          f"{scan / med(m_scan):.0f} files/s | {out}")
    if dcmdump:
        print(f"  find -exec dcmdump -q +sb 7fe0,0010 {{}} +: {ms(d_scan)}, {scan / med(d_scan):.0f} files/s")
        print(f"  ratio marrow / dcmdump = {med(m_scan) / med(d_scan):.2f} (target <= 1)")
    else:
        print("  dcmdump not found (apt-get install dcmtk): no comparison")


def pydicom_data():
    # pydicom-data files
    probe = subprocess.run([py, "-c", "import data_store, os; print(os.path.dirname(data_store.__file__))"],
                           capture_output=True, text=True)
    data = os.path.join(probe.stdout.strip(), "data") if probe.returncode == 0 else None
    corpus = {}
    if data:
        for name in ("RG1_UNCI.dcm", "RG3_UNCI.dcm", "RG1_J2KR.dcm"):
            if os.path.exists(os.path.join(data, name)):
                corpus[name] = os.path.join(data, name)
    else:
        print(f"\n(pydicom-data not importable by {py}: RG1/RG3 figures skipped)")

    return corpus


def figure_3(corpus):
    # 3. view --png against dcm2pnm
    dcm2pnm = shutil.which("dcm2pnm")
    print("\n3. whole-process PNG, full size, the file's first window")
    for label, path in [("generated DX", files[0])] + ([("RG1_UNCI.dcm", corpus["RG1_UNCI.dcm"])]
                                                       if "RG1_UNCI.dcm" in corpus else []):
        mv, dv = [], []
        for _ in range(7):
            mv += timed([marrow, "view", path, "--png", png], 1, env=env)
            if dcm2pnm:
                dv += timed([dcm2pnm, "+on", "+Wi", "1", path, png], 1)
        line = f"  {label}: marrow view --png {ms(mv)}"
        if dcm2pnm:
            line += f"; dcm2pnm +on +Wi 1 {ms(dv)}; ratio {med(mv) / med(dv):.3f} (target <= 0.5)"
        print(line)


def figure_4(corpus):
    # 4. preview pipeline
    print("\n4. preview pipeline: read, decode, window, fit within 320x180")
    if corpus:
        cmd = [timing, "preview_timing", "--ignored", "--nocapture"]  # arguments for a lib test binary
        r = subprocess.run(cmd, cwd=root, capture_output=True, text=True,
                           env=dict(env, MARROW_PREVIEW_BENCH=",".join(corpus.values()),
                                    MARROW_PREVIEW_RUNS="21"))
        inproc, allocs = {}, {}
        for line in r.stdout.splitlines():
            if line.startswith("preview_timing "):
                _, path, m, lo, size = line.split()
                inproc[os.path.basename(path)] = (float(m), float(lo), size)
            elif line.startswith("preview_allocations "):
                _, path, count, nbytes = line.split()
                allocs[os.path.basename(path)] = (int(count), int(nbytes))
        if not inproc:
            print(f"  preview_timing did not run: {r.stderr[-400:]}")
        snippet = r"""
import sys, time, statistics
import numpy as np, pydicom
path, reps = sys.argv[1], int(sys.argv[2])
times = []
for _ in range(reps + 1):
    t = time.perf_counter()
    ds = pydicom.dcmread(path)
    a = ds.pixel_array
    h, w = a.shape
    f = int(-(-max(h / 180, w / 320) // 1))
    small = a[: h // f * f, : w // f * f].reshape(h // f, f, w // f, f).mean(axis=(1, 3))
    c, wd = float(ds.WindowCenter), float(ds.WindowWidth)
    out = np.clip(((small - (c - 0.5)) / (wd - 1) + 0.5) * 255.0, 0, 255).astype(np.uint8)
    times.append(time.perf_counter() - t)
times = times[1:]
print(f"{statistics.median(times) * 1000:.2f} {min(times) * 1000:.2f} {out.shape[1]}x{out.shape[0]}")
"""
        has_py = subprocess.run([py, "-c", "import numpy, pydicom"], capture_output=True).returncode == 0
        for name, path in corpus.items():
            j2k = "J2K" in name
            width = {"RG1_UNCI.dcm": 170, "RG3_UNCI.dcm": 180, "RG1_J2KR.dcm": 170}[name]
            whole = timed([marrow, "view", path, "--width", str(width), "--png", png], 3 if j2k else 15, env=env)
            line = f"  {name}: marrow whole process {ms(whole)}"
            if name in inproc:
                m, lo, size = inproc[name]
                line += f"; marrow in-process median {m:.2f} ms (min {lo:.2f}, {size})"
                if name in allocs:
                    line += f" [{allocs[name][0]} allocations, {allocs[name][1] / 1e6:.2f} MB]"
            if has_py:
                out = subprocess.run([py, "-c", snippet, path, "3" if j2k else "15"], capture_output=True, text=True)
                if out.returncode == 0:
                    pm, plo, psize = out.stdout.split()
                    line += f"; pydicom+numpy in-process median {float(pm):.2f} ms (min {float(plo):.2f}, {psize})"
                    if name in inproc:
                        line += f"; speed-up in-process {float(pm) / inproc[name][0]:.1f}x"
                    line += f", whole process vs pydicom in-process {float(pm) / (med(whole) * 1000):.1f}x"
                else:
                    line += f"; pydicom failed: {out.stderr.strip().splitlines()[-1:]}"
            print(line)
        print("  (targets: RG1/RG3 at least 3x faster than pydicom in-process; RG1_J2KR no slower)")
    else:
        print("  skipped: no pydicom-data")


files = []
try:
    if not only_preview:
        figures_1_and_2()
    corpus = pydicom_data()
    if not only_preview:
        figure_3(corpus)
    for _ in range(int(os.environ.get("BENCH_REPEAT", "1")) if only_preview else 1):
        figure_4(corpus)
finally:
    shutil.rmtree(work, ignore_errors=True)
