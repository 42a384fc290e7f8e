#!/usr/bin/env python3
"""Benchmark of blinded reading under load (issue 4): "submitting a read or an
adjudication: under 20 ms from key to the next frame with 20 readers working on one
database".

Builds the release binary and the load generator (`examples/reading_load.rs`),
creates a study in a temporary folder (`marrow init`; readers r01..r20, adjudicators
adj1, adj2; PATIENTS eligible OA patients, each with one bilateral knee radiograph:
two cases per patient), then starts the 20 reader processes at once, each taking a
case and submitting a read COUNT times, and the 2 adjudicator processes, which decide
the cases that disagree while the readers work (they wait while the queue is empty
and stop when the readers are done). Every process times, per operation, the work
behind one "key to next frame" of the TUI (the database calls the TUI's worker makes
before it answers: submit + reload of the case; adjudicate + reload of the case) and
what follows (the reader worklist / adjudication queue reload).

Usage: python3 bench/reading.py [--patients 1000] [--count 100] [--readers 20]
                                [--adjudicators 2] [--think-ms 0] [--keep] [--no-build]
                                [--busy-retry-us N]   (an experiment, see examples/reading_load.rs)
                                [--busy-cap-us N]     (an experiment: 0.25 ms doubling up to N us)
                                [--bin-dir DIR]       (marrow and reading_load from DIR: compare two builds)
       --think-ms N: each reader waits 0..2N ms (uniform) between taking a case and
       submitting it (0: no pause at all, the harshest load)
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile, time

ap = argparse.ArgumentParser()
ap.add_argument("--patients", type=int, default=1000, help="OA patients (2 cases each)")
ap.add_argument("--count", type=int, default=100, help="reads per reader")
ap.add_argument("--readers", type=int, default=20)
ap.add_argument("--adjudicators", type=int, default=2)
ap.add_argument("--think-ms", type=int, default=0)
ap.add_argument("--busy-retry-us", type=int, default=0,
                help="experiment: replace SQLite's busy backoff with a retry every ~N us (0: marrow as is)")
ap.add_argument("--keep", action="store_true", help="keep the study folder and the raw JSON lines")
ap.add_argument("--no-build", action="store_true", help="use the release binaries already built")
ap.add_argument("--busy-cap-us", type=int, default=0,
                help="experiment: a busy handler sleeping 0.25 ms doubling up to N us, jittered (0: SQLite's)")
ap.add_argument("--bin-dir", help="take marrow and reading_load from this folder (implies --no-build)")
opts = ap.parse_args()

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/marrow-target"))
env = dict(os.environ, CARGO_TARGET_DIR=target, NO_COLOR="1")
for k in ("MARROW_KEY", "MARROW_DB", "MARROW_KEY_FILE"):
    env.pop(k, None)
if not opts.no_build and not opts.bin_dir:
    subprocess.run(["cargo", "build", "--release", "-q"], cwd=root, env=env, check=True)
    subprocess.run(["cargo", "build", "--release", "-q", "--example", "reading_load"], cwd=root, env=env,
                   check=True)
marrow = os.path.join(target, "release", "marrow")
load = os.path.join(target, "release", "examples", "reading_load")
if opts.bin_dir:
    marrow = os.path.join(opts.bin_dir, "marrow")
    load = os.path.join(opts.bin_dir, "reading_load")
work = tempfile.mkdtemp(prefix="marrow-bench-reading-")
db = os.path.join(work, "s.db")


def run(*args):
    return subprocess.run([marrow, "--db", db, *args], env=env, check=True,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return float("nan")
    k = (len(xs) - 1) * p / 100
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def line(name, xs):
    if not xs:
        return f"  {name:<34} (none)"
    return (f"  {name:<34} n={len(xs):<5} p50 {pct(xs, 50):6.1f}  p95 {pct(xs, 95):6.1f}  "
            f"p99 {pct(xs, 99):6.1f}  max {max(xs):6.1f} ms")


try:
    readers = [f"r{i:02d}" for i in range(1, opts.readers + 1)]
    adjudicators = [f"adj{i}" for i in range(1, opts.adjudicators + 1)]
    t = time.perf_counter()
    run("init")
    for r in readers:
        run("users", "add", r, "--role", "reader")
    for a in adjudicators:
        run("users", "add", a, "--role", "adjudicator")
    subprocess.run([load, "fixture", work, str(opts.patients)], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    run("import", "patients", os.path.join(work, "patients.csv"))
    run("import", "dicom", os.path.join(work, "dicom"))
    cases = json.loads(run("cases", "refresh", "--json").stdout)["total"]
    print(f"study: {opts.patients} OA patients, {cases} cases, {len(readers)} readers, "
          f"{len(adjudicators)} adjudicators (set up in {time.perf_counter() - t:.1f} s)")
    if cases * 2 < len(readers) * opts.count:
        print(f"warning: {cases} cases x 2 slots < {len(readers)} x {opts.count} reads", file=sys.stderr)

    backoff = ["--busy-cap-us", str(opts.busy_cap_us)] if opts.busy_cap_us else []
    stop = os.path.join(work, "stop")
    procs = []
    t = time.perf_counter()
    for i, r in enumerate(readers):
        out = open(os.path.join(work, f"{r}.jsonl"), "w")
        procs.append((r, out, subprocess.Popen(
            [load, "read", db, r, str(opts.count), "--think-ms", str(opts.think_ms), "--seed", str(i + 1),
             "--busy-retry-us", str(opts.busy_retry_us), *backoff],
            env=env, stdout=out, stderr=subprocess.PIPE, text=True)))
    adj_procs = []
    for i, a in enumerate(adjudicators):
        out = open(os.path.join(work, f"{a}.jsonl"), "w")
        adj_procs.append((a, out, subprocess.Popen(
            [load, "adjudicate", db, a, "--stop-file", stop, "--think-ms", str(opts.think_ms),
             "--seed", str(100 + i), "--busy-retry-us", str(opts.busy_retry_us), *backoff],
            env=env, stdout=out, stderr=subprocess.PIPE, text=True)))
    failed = []
    for name, out, p in procs:
        _, err = p.communicate()
        out.close()
        if p.returncode != 0:
            failed.append(f"{name}: exit {p.returncode}: {err.strip()}")
    readers_s = time.perf_counter() - t
    open(stop, "w").close()
    for name, out, p in adj_procs:
        _, err = p.communicate()
        out.close()
        if p.returncode != 0:
            failed.append(f"{name}: exit {p.returncode}: {err.strip()}")
    wall_s = time.perf_counter() - t

    rows = []
    for name in readers + adjudicators:
        with open(os.path.join(work, f"{name}.jsonl")) as f:
            rows += [json.loads(x) for x in f if x.strip()]
    reads = [r for r in rows if r["op"] == "read"]
    adjs = [r for r in rows if r["op"] == "adjudicate"]
    ok_reads = [r for r in reads if r["ok"]]
    ok_adjs = [r for r in adjs if r["ok"]]
    errors = [r for r in rows if not r["ok"]]
    by_kind = {}
    for r in errors:
        by_kind.setdefault((r["op"], r.get("kind", "?")), []).append(r.get("error", ""))
    retried = sum(1 for r in reads if not r["newly_assigned"])

    status = json.loads(run("status", "--json").stdout)
    verify = subprocess.run([marrow, "--db", db, "audit", "verify"], env=env, capture_output=True, text=True)

    busy = (f"retry every ~{opts.busy_retry_us} us" if opts.busy_retry_us
            else f"0.25 ms doubling, capped at {opts.busy_cap_us} us" if opts.busy_cap_us
            else "SQLite default")
    print(f"readers done in {readers_s:.1f} s, all done in {wall_s:.1f} s "
          f"({len(ok_reads)} reads, {len(ok_adjs)} adjudications; think {opts.think_ms} ms; "
          f"busy handler: {busy}; "
          f"{os.cpu_count()} CPUs; load average now {os.getloadavg()[0]:.1f})")
    print(f"throughput: {len(ok_reads) / readers_s:.0f} reads/s")
    print(f"read ({len(readers)} concurrent reader processes), milliseconds:")
    print(line("submit_read", [r["submit"] for r in ok_reads]))
    print(line("reload (case_view + case_images)", [r["reload"] for r in ok_reads]))
    print(line("KEY TO FRAME (submit + reload)", [r["frame"] for r in ok_reads]))
    print(line("reader_worklist after", [r["worklist"] for r in ok_reads]))
    print(line("total (frame + worklist)", [r["total"] for r in ok_reads]))
    print(line("take_next_case", [r["take"] for r in reads]))
    print("adjudication (during the reads), milliseconds:")
    print(line("adjudicate", [r["adjudicate"] for r in ok_adjs]))
    print(line("reload (case_view + case_images)", [r["reload"] for r in ok_adjs]))
    print(line("KEY TO FRAME (adjudicate + reload)", [r["frame"] for r in ok_adjs]))
    print(line("adjudication_queue after", [r["queue_reload"] for r in ok_adjs]))
    print(line("total (frame + queue)", [r["total"] for r in ok_adjs]))
    print(line("open case (case_view + images)", [r["open"] for r in adjs]))
    print(f"errors: {len(errors)}" + "".join(
        f"\n  {op} {kind}: {len(msgs)} (e.g. {msgs[0][:160]})" for (op, kind), msgs in sorted(by_kind.items())))
    print(f"adjudication conflicts (two adjudicators, one case; refused, nothing overwritten): "
          f"{len(by_kind.get(('adjudicate', 'conflict'), []))}")
    print(f"busy (SQLITE_BUSY past the 10 s busy_timeout): "
          f"{sum(len(v) for (op, k), v in by_kind.items() if k == 'busy')}")
    print(f"retried reads (a take that returned a slot held from an earlier failed submit): {retried}")
    print(f"status: reads_pending {status.get('reads_pending')}, adjudication_pending "
          f"{status.get('adjudication_pending')}, final_graded {status.get('final_graded')}")
    print(f"audit verify: exit {verify.returncode}: {(verify.stdout or verify.stderr).strip().splitlines()[-1:]}")
    for f in failed:
        print(f"process failed: {f}")
    if opts.keep:
        print(f"kept: {work}")
    if failed or verify.returncode != 0:
        sys.exit(1)
finally:
    if not opts.keep:
        shutil.rmtree(work, ignore_errors=True)
