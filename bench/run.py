#!/usr/bin/env python3
"""Benchmarks of the walking skeleton, run on the release build:

- `marrow import patients` of N generated rows (default 100,000), whole process: rows/s
- `marrow status` on that database, whole process: median and max of 20 runs
- the TUI's first frame on that database, from process start to the first frame drawn
  with the worklist loaded (the TUI logs it), measured in a real terminal (tmux)

Usage: python3 bench/run.py [N]      (needs tmux for the TUI figure)
"""
import os, re, shutil, statistics, subprocess, sys, tempfile, time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/marrow-target"))
env = dict(os.environ, CARGO_TARGET_DIR=target)
subprocess.run(["cargo", "build", "--release", "-q"], cwd=root, env=env, check=True)
marrow = os.path.join(target, "release", "marrow")
n = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
work = tempfile.mkdtemp(prefix="marrow-bench-")
db = os.path.join(work, "s.db")
env.pop("MARROW_KEY", None)


def run(*args, **kw):
    return subprocess.run([marrow, "--db", db, *args], env=env, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


t = time.perf_counter()
subprocess.run([marrow, "generate", "--patients", str(n), "--out", os.path.join(work, "exports")],
               env=env, check=True, stdout=subprocess.DEVNULL)
gen_s = time.perf_counter() - t
imports = []
for attempt in range(3):
    for f in os.listdir(work):
        if f.startswith("s.db"):
            os.remove(os.path.join(work, f))
    run("init")
    t = time.perf_counter()
    out = run("import", "patients", os.path.join(work, "exports", "patients.csv"))
    imports.append(time.perf_counter() - t)
    print(out.stdout.strip().splitlines()[-1])
import_s = statistics.median(imports)
t = time.perf_counter()
run("import", "dxa", os.path.join(work, "exports", "dxa.csv"))
dxa_s = time.perf_counter() - t
dxa_rows = sum(1 for _ in open(os.path.join(work, "exports", "dxa.csv"))) - 1

status = []
for _ in range(20):
    t = time.perf_counter()
    run("status", "--json")
    status.append(time.perf_counter() - t)

first_frame, whole_list = [], []
if shutil.which("tmux"):
    log = db + ".log"
    for i in range(7):
        sock = f"marrow-bench-{os.getpid()}-{i}"
        open(log, "a").close()
        before = len(open(log).read())
        subprocess.run(["tmux", "-L", sock, "new-session", "-d", "-x", "120", "-y", "40",
                        f"{marrow} --db {db}"], env=env, check=True)
        ms = whole = None
        deadline = time.time() + 20
        while time.time() < deadline and whole is None:
            time.sleep(0.1)
            text = open(log).read()[before:]
            m = re.search(r"first frame.*?elapsed_ms=(\d+(?:\.\d+)?)", text)
            w = re.search(r"whole worklist shown.*?elapsed_ms=(\d+(?:\.\d+)?)", text)
            if m:
                ms = float(m.group(1))
            if w:
                whole = float(w.group(1))
        subprocess.run(["tmux", "-L", sock, "send-keys", "q"], env=env)
        time.sleep(0.3)
        subprocess.run(["tmux", "-L", sock, "kill-server"], env=env, stderr=subprocess.DEVNULL)
        if ms is not None:
            first_frame.append(ms)
        if whole is not None:
            whole_list.append(whole)

print()
print(f"patients: {n}")
print(f"generate {n} patients + dxa + labs: {gen_s:.2f} s")
print(f"import patients (fresh database, whole process, median of {len(imports)}): {import_s:.2f} s "
      f"= {n / import_s:,.0f} rows/s; best {n / min(imports):,.0f} rows/s (target >= 50,000)")
print(f"import dxa: {dxa_rows} rows in {dxa_s:.2f} s = {dxa_rows / dxa_s:,.0f} rows/s")
print(f"status --json: median {statistics.median(status) * 1000:.0f} ms, max {max(status) * 1000:.0f} ms "
      f"over {len(status)} runs (target < 200 ms)")
if first_frame:
    print(f"TUI first frame: median {statistics.median(first_frame):.0f} ms, max {max(first_frame):.0f} ms "
          f"over {len(first_frame)} starts (target < 300 ms)")
    print(f"TUI whole worklist ({n} patients) shown: median {statistics.median(whole_list):.0f} ms, "
          f"max {max(whole_list):.0f} ms")
else:
    print("TUI first frame: not measured (tmux missing or no 'first frame' line in the log)")
shutil.rmtree(work)
