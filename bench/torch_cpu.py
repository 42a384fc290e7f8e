#!/usr/bin/env python3
"""CPU inference: marrow (burn-ndarray) against PyTorch on the same architecture
(issue 5, "Figures"), in one script run.

    python3 bench/torch_cpu.py [ROUNDS] [SECONDS]

- Creates a venv outside the repository (~/.cache/marrow-bench/torch-venv, or
  BENCH_TORCH_VENV) and installs torch into it: the CPU wheel from
  download.pytorch.org, or, where that host cannot be reached, torch from PyPI
  (the CUDA build, which runs on the CPU as well). BENCH_PYTHON: use that
  interpreter instead (it must import torch).
- Reads the architecture of models/kl and models/op from their model cards and
  builds the same network in PyTorch: four 3x3 'same' convolutions with batch norm
  and ReLU, 2x2 max pool after the first three, adaptive average pool to a grid,
  a linear layer to the image features, a clinical MLP, the fusion layer and the
  head (dropout is a no-op in eval mode). The parameter counts of the two are
  compared (burn counts the batch norms' running
  statistics as parameters; so does the script), and it stops if they differ.
- Times forward passes at batch 16 (eval mode, torch.no_grad, torch threads = the
  threads marrow's rayon pool uses, i.e. RAYON_NUM_THREADS or one per core) on
  random inputs of the model's input size, and marrow's forward pass
  (examples/infer_bench.rs: the same batch already preprocessed, through the frozen
  CPU network that predicts, and also with marrow's preprocessing; burn-ndarray's own
  forward pass is printed beside them as the reference). The two alternate over ROUNDS rounds (default 5) of
  SECONDS (default 3) each per model, so both see the same load on a shared
  machine; the medians and their ratio are printed.
- BENCH_INFER_BIN: a prebuilt infer_bench binary (otherwise
  `cargo build --release --example infer_bench`, honouring CARGO_TARGET_DIR).
"""

import json
import os
import statistics
import subprocess
import sys
import time
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VENV = Path(os.environ.get("BENCH_TORCH_VENV", Path.home() / ".cache/marrow-bench/torch-venv"))
BATCH = 16


def ensure_torch():
    """Re-executes this script under an interpreter that has torch."""
    try:
        import torch  # noqa: F401

        return
    except ImportError:
        pass
    if os.environ.get("BENCH_PYTHON"):
        py = Path(os.environ["BENCH_PYTHON"])
    else:
        py = VENV / "bin" / "python"
        if not py.exists():
            print(f"creating {VENV}", flush=True)
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        has = subprocess.run([str(py), "-c", "import torch"], capture_output=True).returncode == 0
        if not has:
            pip = [str(py), "-m", "pip", "install", "--quiet"]
            cpu = subprocess.run(pip + ["torch", "--index-url", "https://download.pytorch.org/whl/cpu"])
            if cpu.returncode != 0:
                print("the CPU wheel index is not reachable; installing torch from PyPI", flush=True)
                subprocess.run(pip + ["torch"], check=True)
    if os.environ.get("MARROW_BENCH_REEXEC"):
        sys.exit("torch does not import in " + str(py))
    os.environ["MARROW_BENCH_REEXEC"] = "1"
    os.execv(str(py), [str(py), __file__] + sys.argv[1:])


def marrow_threads():
    n = os.environ.get("RAYON_NUM_THREADS")
    return int(n) if n and int(n) > 0 else os.cpu_count()


def build_net(torch, card):
    nn = torch.nn
    spec = card["spec"]
    a = spec["architecture"]
    c1, c2, c3, c4 = a["channels"]
    grid = a["grid"]
    clinical_width = 2 * len(spec.get("clinical", {}).get("features", []))
    classes = len(spec["classes"])

    class Net(nn.Module):
        def __init__(self):
            super().__init__()

            def block(i, o):
                return nn.Sequential(nn.Conv2d(i, o, 3, padding="same"), nn.BatchNorm2d(o), nn.ReLU())

            self.b1, self.b2, self.b3, self.b4 = block(1, c1), block(c1, c2), block(c2, c3), block(c3, c4)
            self.pool = nn.MaxPool2d(2, 2)
            self.grid = nn.AdaptiveAvgPool2d((grid, grid))
            self.image_fc = nn.Linear(c4 * grid * grid, a["image_features"])
            self.clinical_fc = nn.Linear(clinical_width, a["clinical_hidden"]) if clinical_width else None
            clin_out = a["clinical_hidden"] if clinical_width else 0
            self.fusion = nn.Linear(a["image_features"] + clin_out, a["fusion_hidden"])
            self.head = nn.Linear(a["fusion_hidden"], classes)
            self.dropout = nn.Dropout(a["dropout"])

        def forward(self, images, clinical):
            x = self.pool(self.b1(images))
            x = self.pool(self.b2(x))
            x = self.pool(self.b3(x))
            x = self.grid(self.b4(x))
            img = torch.relu(self.image_fc(self.dropout(torch.flatten(x, 1))))
            if self.clinical_fc is not None:
                img = torch.cat([img, torch.relu(self.clinical_fc(clinical))], 1)
            h = torch.relu(self.fusion(self.dropout(img)))
            return torch.softmax(self.head(h), 1)

    return Net(), clinical_width


def torch_round(torch, net, images, clinical, seconds):
    done = 0
    t = time.perf_counter()
    with torch.no_grad():
        while done == 0 or time.perf_counter() - t < seconds:
            net(images, clinical)
            done += images.shape[0]
    return done / (time.perf_counter() - t)


def infer_bench_bin():
    if os.environ.get("BENCH_INFER_BIN"):
        return os.environ["BENCH_INFER_BIN"]
    subprocess.run(["cargo", "build", "--release", "--example", "infer_bench"], cwd=REPO, check=True)
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    return str(target / "release" / "examples" / "infer_bench")


def main():
    ensure_torch()
    import torch

    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3.0
    threads = marrow_threads()
    torch.set_num_threads(threads)
    binary = infer_bench_bin()
    cpu = subprocess.run(["sh", "-c", "grep -m1 'model name' /proc/cpuinfo"], capture_output=True, text=True)
    print(f"torch {torch.__version__}, {threads} threads; CPU: {cpu.stdout.strip().split(':')[-1].strip()}")

    tasks = ["kl", "op"]
    nets = {}
    for task in tasks:
        card = tomllib.loads((REPO / "models" / task / "model.toml").read_text())
        net, width = build_net(torch, card)
        net.eval()
        size = card["spec"]["preprocess"]["input_size"]
        images = torch.randn(BATCH, 1, size, size)
        clinical = torch.randn(BATCH, max(width, 1))
        with torch.no_grad():
            out = net(images, clinical)
        assert out.shape == (BATCH, len(card["spec"]["classes"]))
        # burn counts the batch norms' running mean and variance among its parameters
        running = sum(b.numel() for n, b in net.named_buffers() if n.endswith(("running_mean", "running_var")))
        nets[task] = (net, images, clinical, sum(p.numel() for p in net.parameters()) + running, size, width)

    torch_ips = {t: [] for t in tasks}
    marrow_fwd = {t: [] for t in tasks}
    marrow_pre = {t: [] for t in tasks}
    marrow_burn = {t: [] for t in tasks}
    params_marrow = {}
    for r in range(rounds):
        for task in tasks:
            net, images, clinical, *_ = nets[task]
            torch_round(torch, net, images, clinical, 0.3)  # warm-up
            torch_ips[task].append(torch_round(torch, net, images, clinical, seconds))
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        out = subprocess.run(
            [binary, str(BATCH), str(seconds), "1", str(REPO / "models")],
            capture_output=True, text=True, check=True, env=env,
        ).stdout
        for line in out.splitlines():
            if line.startswith("RESULT "):
                res = json.loads(line[len("RESULT "):])
                t = res["task"]
                marrow_fwd[t] += res["forward_images_per_s"]
                marrow_pre[t] += res["with_preprocessing_images_per_s"]
                marrow_burn[t] += res.get("burn_forward_images_per_s", [])
                params_marrow[t] = res["params"]
                assert res["threads"] == threads, res
        print(
            f"round {r + 1}/{rounds}: "
            + "; ".join(
                f"{t}: torch {torch_ips[t][-1]:.0f}, marrow {marrow_fwd[t][-1]:.0f} images/s" for t in tasks
            ),
            flush=True,
        )

    print()
    print(f"batch {BATCH}, {threads} threads, {rounds} rounds of {seconds:g} s, medians (images/s):")
    print("| model | parameters (torch / marrow) | PyTorch CPU | marrow forward | ratio marrow/torch | marrow incl. preprocessing | burn-ndarray forward (reference) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    summary = {}
    for task in tasks:
        _, _, _, p_torch, size, width = nets[task]
        if p_torch != params_marrow.get(task):
            sys.exit(f"{task}: parameter counts differ: torch {p_torch}, marrow {params_marrow.get(task)}")
        t, m, mp = (statistics.median(v) for v in (torch_ips[task], marrow_fwd[task], marrow_pre[task]))
        mb = statistics.median(marrow_burn[task]) if marrow_burn[task] else float("nan")
        summary[task] = {"torch": t, "marrow": m, "marrow_with_preprocessing": mp, "ratio": m / t, "burn": mb}
        print(
            f"| {task} ({size}x{size}, clinical {width}) | {p_torch} / {params_marrow[task]} | {t:.0f} "
            f"({min(torch_ips[task]):.0f}-{max(torch_ips[task]):.0f}) | {m:.0f} "
            f"({min(marrow_fwd[task]):.0f}-{max(marrow_fwd[task]):.0f}) | {m / t:.2f} | {mp:.0f} | {mb:.0f} |"
        )
    print("SUMMARY " + json.dumps(summary))


if __name__ == "__main__":
    main()
