#!/usr/bin/env python3
"""Scale (issue 7): a generated study of 100,000 patients and 20,000 images, release build.

    python3 bench/scale.py [PATIENTS=100000] [IMAGES=20000]

Steps and figures:
- `marrow generate` writes PATIENTS - IMAGES patients (with DXA and labs) and IMAGES
  small radiographs (64x64, knee/hip/spine, `generate --dicom`); the images' patient IDs
  (PK500000.., SY500000..) get patient rows of their own, cloned from generated rows,
  so every image links to a patient: PATIENTS patients in all;
- imports: patients, dxa, labs, dicom (whole process, seconds);
- `marrow status --json`: median and max of 20 runs (target < 200 ms);
- the TUI in a 120x40 tmux window, 5 starts: process start to the first frame and to
  the whole worklist (the TUI logs both) (target < 300 ms to the first frame);
  its peak resident memory (VmHWM of the process, read from /proc after the worklist is
  loaded and 200 keys were pressed) (target < 150 MB); the bytes it writes to the
  terminal per keystroke (tmux pipe-pane) for j/k moves, half pages and opening a
  patient;
- TERM=xterm-256color, screen-256color, tmux-256color and NO_COLOR=1: the TUI starts,
  shows the worklist, moves and quits with status 0;
- examples/tui_keys_bench.rs on the same database: every key of a worklist script to
  the next frame, headless (target p99 < 16 ms), and each worker answer to its frame.

Needs tmux. CARGO_TARGET_DIR is honoured (default ~/.cache/marrow-target);
BENCH_NO_BUILD=1 uses the binaries already built there; BENCH_KEEP=1 keeps the study.
"""
import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
target = os.environ.get("CARGO_TARGET_DIR", os.path.expanduser("~/.cache/marrow-target"))
env = dict(os.environ, CARGO_TARGET_DIR=target)
env.pop("MARROW_KEY", None)
env.pop("NO_COLOR", None)
if not os.environ.get("BENCH_NO_BUILD"):
    subprocess.run(["cargo", "build", "--release", "-q", "--bin", "marrow", "--example", "tui_keys_bench"],
                   cwd=root, env=env, check=True)
marrow = os.path.join(target, "release", "marrow")
keys_bench = os.path.join(target, "release", "examples", "tui_keys_bench")
n_patients = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
n_images = int(sys.argv[2]) if len(sys.argv) > 2 else 20_000
work = tempfile.mkdtemp(prefix="marrow-scale-")
db = os.path.join(work, "s.db")
exports = os.path.join(work, "exports")
dicom = os.path.join(work, "dicom")


def run(*args):
    return subprocess.run([marrow, "--db", db, *args], env=env, check=False,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def timed(*args, ok=(0, 3)):
    t = time.perf_counter()
    out = run(*args)
    s = time.perf_counter() - t
    if out.returncode not in ok:
        sys.exit(f"marrow {' '.join(args)}: exit {out.returncode}\n{out.stderr}")
    return s, out


# --- the study -------------------------------------------------------------------
subprocess.run([marrow, "generate", "--patients", str(n_patients - n_images), "--out", exports],
               env=env, check=True, stdout=subprocess.DEVNULL)
subprocess.run([marrow, "generate", "--dicom", str(n_images), "--rows", "64", "--cols", "64",
                "--out", dicom], env=env, check=True, stdout=subprocess.DEVNULL)
# Patients for the images: bench_spec(n) names PK{500000 + n/2} (even n), SY{...} (odd n).
patients_csv = os.path.join(exports, "patients.csv")
with open(patients_csv, newline="", encoding="utf-8") as f:
    rows = list(csv.reader(f))
header, body = rows[0], rows[1:]
mrn_col = header.index("mrn")
site_col = header.index("site")
extra = []
for n in range(n_images):
    r = list(body[n % len(body)])
    prefix = "PK" if n % 2 == 0 else "SY"
    r[mrn_col] = f"{prefix}{500000 + n // 2:06d}"
    r[site_col] = "PKUPH" if prefix == "PK" else "SYSMH"
    extra.append(r)
with open(patients_csv, "a", newline="", encoding="utf-8") as f:
    csv.writer(f).writerows(extra)

run("init")
imports = {}
for kind in ["patients", "dxa", "labs"]:
    imports[kind], _ = timed("import", kind, os.path.join(exports, f"{kind}.csv"))
imports["dicom"], out = timed("import", "dicom", dicom)
status = json.loads(run("status", "--json").stdout)

status_s = []
for _ in range(20):
    s, _ = timed("status", "--json", ok=(0,))
    status_s.append(s)


# --- the TUI in tmux --------------------------------------------------------------
def tmux(sock, *args, check=True):
    return subprocess.run(["tmux", "-L", sock, *args], env=env, check=check,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def screen(sock):
    return tmux(sock, "capture-pane", "-p", "-t", "main").stdout


def wait(sock, pred, what, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        s = screen(sock)
        if pred(s):
            return s
        time.sleep(0.05)
    sys.exit(f"waited {timeout} s for {what}; the screen:\n{screen(sock)}")


def start_tui(sock, extra_env=""):
    cmd = f"{extra_env} exec {marrow} --db {db}; "
    tmux(sock, "new-session", "-d", "-x", "120", "-y", "40", "-s", "main",
         f"sh -c '{cmd.strip()}'; echo MARROW-EXIT=$?; sleep 30")


def kill(sock):
    tmux(sock, "kill-server", check=False)


log = db + ".log"
first_frame, whole_list, rss_mb = [], [], []
bytes_per_key = {}
if shutil.which("tmux"):
    for i in range(5):
        sock = f"marrow-scale-{os.getpid()}-{i}"
        open(log, "a").close()
        before = len(open(log, encoding="utf-8", errors="replace").read())
        start_tui(sock, "TERM=tmux-256color")
        ms = whole = None
        deadline = time.time() + 30
        while time.time() < deadline and whole is None:
            time.sleep(0.05)
            text = open(log, encoding="utf-8", errors="replace").read()[before:]
            m = re.search(r"first frame.*?elapsed_ms=(\d+(?:\.\d+)?)", text)
            w = re.search(r"whole worklist shown.*?elapsed_ms=(\d+(?:\.\d+)?)", text)
            if m:
                ms = float(m.group(1))
            if w:
                whole = float(w.group(1))
        if ms is not None:
            first_frame.append(ms)
        if whole is not None:
            whole_list.append(whole)
        # The marrow process itself (the pane runs a shell that runs it).
        pid = subprocess.run(["pgrep", "-n", "-f", f"^{marrow} --db {db}$"], stdout=subprocess.PIPE,
                             text=True).stdout.strip()
        if i == 0:
            # Bytes written to the terminal per keystroke, by kind of key.
            pipe = os.path.join(work, "pane.bytes")
            tmux(sock, "pipe-pane", "-t", "main", "-o", f"cat >> {pipe}")
            time.sleep(0.3)
            for name, keys, settle in [("j (move down)", ["j"] * 60, 0.03),
                                       ("k (move up)", ["k"] * 60, 0.03),
                                       ("Ctrl-d (half page)", ["C-d"] * 20, 0.05),
                                       ("Enter then Esc (open a patient, back)", ["Enter", "Escape"] * 10, 0.3)]:
                time.sleep(0.5)
                b0 = os.path.getsize(pipe) if os.path.exists(pipe) else 0
                for key in keys:
                    tmux(sock, "send-keys", "-t", "main", key)
                    time.sleep(settle)
                time.sleep(0.8)
                b1 = os.path.getsize(pipe)
                bytes_per_key[name] = (b1 - b0) / len(keys)
            tmux(sock, "pipe-pane", "-t", "main")
        else:
            for _ in range(200):
                tmux(sock, "send-keys", "-t", "main", "j")
        time.sleep(0.5)
        try:
            with open(f"/proc/{pid}/status") as f:
                hwm = next(l for l in f if l.startswith("VmHWM:"))
            rss_mb.append(int(hwm.split()[1]) / 1024)
        except (OSError, StopIteration):
            pass
        tmux(sock, "send-keys", "-t", "main", "q")
        wait(sock, lambda s: "MARROW-EXIT=" in s, "the TUI to quit")
        kill(sock)

    terms = {}
    for j, (label, extra_env) in enumerate([("TERM=xterm-256color", "TERM=xterm-256color"),
                             ("TERM=screen-256color", "TERM=screen-256color"),
                             ("TERM=tmux-256color", "TERM=tmux-256color"),
                             ("NO_COLOR=1 (TERM=xterm-256color)", "TERM=xterm-256color NO_COLOR=1")]):
        sock = f"marrow-scale-term-{os.getpid()}-{j}"
        start_tui(sock, extra_env)
        s = wait(sock, lambda s: "eligible" in s and "q quit" in s, f"the worklist under {label}")
        tmux(sock, "send-keys", "-t", "main", "j")
        time.sleep(0.3)
        tmux(sock, "send-keys", "-t", "main", "q")
        s = wait(sock, lambda s: "MARROW-EXIT=" in s, f"the TUI to quit under {label}")
        terms[label] = "ok" if "MARROW-EXIT=0" in s else s.strip().splitlines()[-1]
        kill(sock)

keys = subprocess.run([keys_bench, db, "3000"], env=env, check=True,
                      stdout=subprocess.PIPE, text=True).stdout
res = json.loads(next(l for l in keys.splitlines() if l.startswith("RESULT "))[7:])

print()
print(f"study: {n_patients} patients ({n_patients - n_images} generated + {n_images} for the images), "
      f"{n_images} images of 64x64; database {os.path.getsize(db) / 1e6:.0f} MB")
for kind, s in imports.items():
    print(f"import {kind}: {s:.2f} s")
print(f"status --json: median {statistics.median(status_s) * 1000:.0f} ms, max {max(status_s) * 1000:.0f} ms "
      f"over {len(status_s)} runs (target < 200 ms)")
if first_frame:
    print(f"TUI start to first frame: median {statistics.median(first_frame):.0f} ms, max {max(first_frame):.0f} ms "
          f"over {len(first_frame)} starts (target < 300 ms)")
    print(f"TUI start to the whole worklist: median {statistics.median(whole_list):.0f} ms, "
          f"max {max(whole_list):.0f} ms")
if rss_mb:
    print(f"TUI peak resident memory: median {statistics.median(rss_mb):.0f} MB, max {max(rss_mb):.0f} MB "
          f"(target < 150 MB)")
for name, b in bytes_per_key.items():
    print(f"bytes to the terminal per keystroke, {name}: {b:.0f}")
for label, r in (terms.items() if shutil.which("tmux") else []):
    print(f"{label}: {r}")
print(f"headless, {res['patients']} patients: key -> next frame p50 {res['key_frame_ms']['p50']:.2f} ms, "
      f"p99 {res['key_frame_ms']['p99']:.2f} ms, max {res['key_frame_ms']['max']:.2f} ms over {res['keys']} keys "
      f"(target p99 < 16 ms); worker answer -> frame p50 {res['answer_frame_ms']['p50']:.2f} ms, "
      f"p99 {res['answer_frame_ms']['p99']:.2f} ms over {res['answers']} answers; "
      f"first frame {res['first_frame_ms']:.0f} ms, whole worklist {res['whole_worklist_ms']:.0f} ms; "
      f"peak RSS {res['peak_rss_mb']:.0f} MB")
if os.environ.get("BENCH_KEEP"):
    print(f"kept {work}")
else:
    shutil.rmtree(work)
