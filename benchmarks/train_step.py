"""One training step, disttorch against PyTorch on the CPU, in a single run.

Models (same initial weights and data in both frameworks):
  * MLP 784-512-512-10, batch 256, SGD with momentum, cross-entropy;
  * CNN conv(1,32,3)-ReLU-conv(32,64,3)-ReLU-maxpool2-linear(9216,128)-ReLU-linear(128,10),
    batch 64 of 1x28x28, Adam, cross-entropy;
  * resnet18: torchvision's ResNet-18 layout (10 classes), batch 16 of 3x64x64, SGD with momentum;
    disttorch uses ``disttorch.vision.models.resnet18``, PyTorch torchvision's when it imports,
    else the same network built here with torchvision's parameter names;
  * gpt: 4 pre-norm blocks, d_model 128, 4 heads, causal attention through
    ``F.scaled_dot_product_attention``, GELU MLP 512, vocabulary 2000, sequence 64, batch 16, AdamW;
  * lstm: word language model, embedding 2000x200, 2-layer LSTM of 200 units, decoder to 2000 words,
    sequence 35, batch 20 (time-major), SGD.

Time: every (framework, model, thread count) runs in a subprocess of its own (OMP/MKL/OpenBLAS
variables set before import, threadpoolctl and torch.set_num_threads inside). The frameworks
alternate for ``--rounds`` rounds and each keeps its best median step time, which filters out
load from other processes on a shared machine. The ratio of the best median CPU times (process
time per step) is printed too: with one thread it is the steadier figure under load.

Memory: the CNN steps run once more per framework in a subprocess with glibc's mmap threshold
pinned (``MALLOC_MMAP_THRESHOLD_``, the same for both, and disttorch's own heap retention off:
``DISTTORCH_MALLOC_TUNING=0``), so freed large blocks go back to the OS and resident memory tracks
live memory. (With the retention on, as in the timed runs, RSS stays at the step peak between steps.) After warm-up the kernel's peak-RSS mark is reset; the
step peak is the highest RSS during the steps minus the RSS between steps (activations,
gradients, temporaries), and the state is the RSS between steps minus the RSS after import
(parameters, gradients, optimizer state).

Usage: python benchmarks/train_step.py [--models mlp,cnn,resnet18,gpt,lstm] [--threads 1 2] [--steps-mlp 40]
       [--steps-cnn 12] [--steps-large 8] [--rounds 3] [--json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

# disttorch step time at most this multiple of PyTorch's (issue 17), per model and thread count
TARGETS = {"mlp": 1.0, "cnn": 1.0, "resnet18": 1.2, "gpt": 1.2, "lstm": 1.1}
TARGETS_2_THREADS = {"mlp": 1.0, "cnn": 1.1}


def _target(model, threads):
    return TARGETS_2_THREADS.get(model, TARGETS[model]) if threads >= 2 else TARGETS[model]
MEMORY_TARGET = 1.5                   # CNN step peak memory at most this multiple of PyTorch's
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMEXPR_NUM_THREADS",
               "VECLIB_MAXIMUM_THREADS")


# ---- worker side -------------------------------------------------------------------------------------
def _import(framework, threads):
    try:
        from threadpoolctl import threadpool_limits
        threadpool_limits(threads)
    except ImportError:
        pass  # the *_NUM_THREADS variables set by the driver still apply
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        return torch
    import disttorch
    import disttorch.nn  # noqa: F401
    import disttorch.optim  # noqa: F401
    return disttorch


def _torch_resnet18(nn):
    """torchvision's ResNet-18 for PyTorch: torchvision's own if it imports, else built here alike."""
    try:
        from torchvision.models import resnet18
        return resnet18(num_classes=10)
    except Exception:  # torchvision missing, or built for another torch (its C ops fail to register)
        pass

    class BasicBlock(nn.Module):
        def __init__(self, inplanes, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.downsample = None
            if stride != 1 or inplanes != planes:
                self.downsample = nn.Sequential(nn.Conv2d(inplanes, planes, 1, stride, bias=False),
                                                nn.BatchNorm2d(planes))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.relu(self.bn1(self.conv1(x)))
            out = self.bn2(self.conv2(out))
            return self.relu(out + identity)

    class ResNet18(nn.Module):
        def __init__(self, num_classes):
            super().__init__()
            self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(64)
            self.relu = nn.ReLU(inplace=True)
            self.maxpool = nn.MaxPool2d(3, 2, 1)
            widths, inplanes = (64, 128, 256, 512), 64
            for i, planes in enumerate(widths):
                stride = 1 if i == 0 else 2
                setattr(self, f"layer{i + 1}", nn.Sequential(BasicBlock(inplanes, planes, stride),
                                                             BasicBlock(planes, planes, 1)))
                inplanes = planes
            self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
            self.fc = nn.Linear(512, num_classes)

        def forward(self, x):
            x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
            x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
            return self.fc(self.avgpool(x).flatten(1))

    return ResNet18(10)


def _gpt(tl, vocab=2000, d_model=128, heads=4, layers=4, seq=64):
    """A small GPT: token + position embeddings, pre-norm blocks with causal SDPA, tied to nothing."""
    nn, F = tl.nn, tl.nn.functional

    class Block(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln1 = nn.LayerNorm(d_model)
            self.qkv = nn.Linear(d_model, 3 * d_model)
            self.proj = nn.Linear(d_model, d_model)
            self.ln2 = nn.LayerNorm(d_model)
            self.fc1 = nn.Linear(d_model, 4 * d_model)
            self.act = nn.GELU()
            self.fc2 = nn.Linear(4 * d_model, d_model)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
            q, k, v = (z.view(b, t, heads, c // heads).transpose(1, 2) for z in (q, k, v))
            att = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(att.transpose(1, 2).reshape(b, t, c))
            return x + self.fc2(self.act(self.fc1(self.ln2(x))))

    class GPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.tok = nn.Embedding(vocab, d_model)
            self.pos = nn.Embedding(seq, d_model)
            self.blocks = nn.Sequential(*[Block() for _ in range(layers)])
            self.ln_f = nn.LayerNorm(d_model)
            self.head = nn.Linear(d_model, vocab)

        def forward(self, idx):
            positions = tl.arange(idx.shape[1])
            x = self.blocks(self.tok(idx) + self.pos(positions))
            return self.head(self.ln_f(x)).reshape(-1, vocab)

    return GPT()


def _lstm_lm(tl, vocab=2000, hidden=200, layers=2):
    """The word language model of PyTorch's examples, without dropout: embedding, LSTM, decoder."""
    nn = tl.nn

    class LSTMLM(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = nn.Embedding(vocab, hidden)
            self.rnn = nn.LSTM(hidden, hidden, layers)
            self.decoder = nn.Linear(hidden, vocab)

        def forward(self, tokens):  # (L, N) time-major
            out, _ = self.rnn(self.encoder(tokens))
            return self.decoder(out).reshape(-1, vocab)

    return LSTMLM()


def _init_shared(tl, net, rng):
    """Same weights in both frameworks, drawn by parameter name from one NumPy RNG: matrices and
    kernels U(+-1/sqrt(fan_in)), biases U(+-0.05), norm scales 1; buffers keep their defaults."""
    with tl.no_grad():
        for name, p in sorted(net.named_parameters()):
            if p.ndim > 1:
                bound = 1.0 / np.sqrt(int(np.prod(p.shape[1:])))
                p.copy_(tl.from_numpy(rng.uniform(-bound, bound, tuple(p.shape)).astype(np.float32)))
            elif "bias" in name.rsplit(".", 1)[-1]:
                p.copy_(tl.from_numpy(rng.uniform(-0.05, 0.05, tuple(p.shape)).astype(np.float32)))
            else:
                p.fill_(1.0)


def _build_large(tl, model):
    """ResNet-18, the GPT or the LSTM language model with its optimizer and one batch."""
    rng = np.random.default_rng(0)
    if model == "resnet18":
        if tl.__name__ == "torch":
            net = _torch_resnet18(tl.nn)
        else:
            from disttorch.vision.models import resnet18
            net = resnet18(num_classes=10)
        opt_factory = lambda params: tl.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)  # noqa: E731
        x = rng.standard_normal((16, 3, 64, 64)).astype(np.float32)
        y = rng.integers(0, 10, 16)
    elif model == "gpt":
        net = _gpt(tl)
        opt_factory = lambda params: tl.optim.AdamW(params, lr=3e-4, weight_decay=0.1)  # noqa: E731
        x = rng.integers(0, 2000, (16, 64))
        y = rng.integers(0, 2000, 16 * 64)
    else:
        net = _lstm_lm(tl)
        opt_factory = lambda params: tl.optim.SGD(params, lr=1.0)  # noqa: E731
        x = rng.integers(0, 2000, (35, 20))
        y = rng.integers(0, 2000, 35 * 20)
    _init_shared(tl, net, np.random.default_rng(1))
    net.train()
    opt = opt_factory(net.parameters())
    x = tl.from_numpy(x)
    y = tl.from_numpy(y.astype(np.int64))
    return _training_step(net, opt, tl.nn.CrossEntropyLoss(), x, y)


def _training_step(net, opt, loss_fn, x, y):
    """One training step on a fixed batch (forward, backward, optimizer), the same in both frameworks."""

    def step():
        opt.zero_grad()
        loss = loss_fn(net(x), y)
        loss.backward()
        opt.step()
        return loss

    return step


def _build(tl, model):
    """The model, its optimizer and one batch; weights drawn from one NumPy RNG in both frameworks."""
    if model not in ("mlp", "cnn"):
        return _build_large(tl, model)
    nn = tl.nn
    if model == "mlp":
        net = nn.Sequential(nn.Linear(784, 512), nn.ReLU(), nn.Linear(512, 512), nn.ReLU(), nn.Linear(512, 10))
        opt = tl.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
        batch, shape = 256, (784,)
    else:
        net = nn.Sequential(nn.Conv2d(1, 32, 3), nn.ReLU(), nn.Conv2d(32, 64, 3), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(9216, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = tl.optim.Adam(net.parameters(), lr=1e-3)
        batch, shape = 64, (1, 28, 28)
    rng = np.random.default_rng(0)
    with tl.no_grad():
        for p in net.parameters():  # PyTorch's default fan-in uniform init, from the shared RNG
            fan_in = int(np.prod(p.shape[1:])) if p.ndim > 1 else p.shape[0]
            bound = 1.0 / np.sqrt(fan_in)
            p.copy_(tl.from_numpy(rng.uniform(-bound, bound, tuple(p.shape)).astype(np.float32)))
    x = tl.from_numpy(rng.standard_normal((batch,) + shape).astype(np.float32))
    y = tl.from_numpy(rng.integers(0, 10, batch).astype(np.int64))
    return _training_step(net, opt, tl.nn.CrossEntropyLoss(), x, y)


def time_worker(framework, model, threads, steps, warmup):
    """Median and min step time (ms) of one framework."""
    step = _build(_import(framework, threads), model)
    first_loss = float(step().item())
    for _ in range(warmup - 1):
        step()
    times, cpu_times = [], []
    for _ in range(steps):
        t0, c0 = time.perf_counter(), time.process_time()
        step()
        times.append((time.perf_counter() - t0) * 1e3)
        cpu_times.append((time.process_time() - c0) * 1e3)  # steadier than wall time on a loaded machine
    return {"median_ms": statistics.median(times), "min_ms": min(times), "first_loss": first_loss,
            "cpu_median_ms": statistics.median(cpu_times)}


def _rss_bytes():
    try:
        import psutil
        return psutil.Process().memory_info().rss
    except ImportError:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _reset_peak_rss():
    """Resets the kernel's resident-set high-water mark (Linux >= 4.0); False where unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_rss_bytes():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import resource
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def memory_worker(framework, model, threads, steps, warmup):
    """Peak resident memory of one framework's steps, alone in this process."""
    tl = _import(framework, threads)
    rss_import = _rss_bytes()
    step = _build(tl, model)
    for _ in range(warmup):
        step()
    exact = _reset_peak_rss()
    rss_between_steps = _rss_bytes()
    for _ in range(steps):
        step()
    peak = _peak_rss_bytes()
    return {"step_peak_mb": max(peak - rss_between_steps, 0) / 2 ** 20,
            "state_mb": max(rss_between_steps - rss_import, 0) / 2 ** 20, "exact_peak": exact}


# ---- driver side -------------------------------------------------------------------------------------
def _run(args, threads, **extra_env):
    env = dict(os.environ, **{var: str(threads) for var in THREAD_VARS}, **extra_env)
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", *map(str, args)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"worker {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps-mlp", type=int, default=40)
    ap.add_argument("--steps-cnn", type=int, default=12)
    ap.add_argument("--steps-large", type=int, default=8, help="timed steps of resnet18, gpt and lstm")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="alternations of the two frameworks per configuration")
    ap.add_argument("--models", nargs="+", default=["mlp", "cnn"],
                    help="any of " + ",".join(TARGETS) + " (space- or comma-separated)")
    ap.add_argument("--json", action="store_true", help="also print all results as JSON")
    args = ap.parse_args()
    args.models = [m for item in args.models for m in item.split(",") if m]
    for m in args.models:
        if m not in TARGETS:
            ap.error(f"--models: unknown model {m!r}; choose from {', '.join(TARGETS)}")
    results = []
    print(f"{'model':8} {'threads':>7} {'disttorch ms':>13} {'torch ms':>9} {'ratio':>6} {'target':>7}       "
          f"first loss disttorch/torch")
    for model in args.models:
        steps = {"mlp": args.steps_mlp, "cnn": args.steps_cnn}.get(model, args.steps_large)
        for threads in args.threads:
            rounds = {"disttorch": [], "torch": []}
            for _ in range(args.rounds):
                for fw in rounds:
                    rounds[fw].append(_run(["time", fw, model, threads, steps, args.warmup], threads))
            t = {fw: min(rs, key=lambda r: r["median_ms"]) for fw, rs in rounds.items()}
            ours, ref = t["disttorch"], t["torch"]
            ratio = ours["median_ms"] / ref["median_ms"]
            min_ratio = min(r["min_ms"] for r in rounds["disttorch"]) / min(r["min_ms"] for r in rounds["torch"])
            cpu_ratio = (min(r["cpu_median_ms"] for r in rounds["disttorch"])
                         / min(r["cpu_median_ms"] for r in rounds["torch"]))
            verdict = "ok" if ratio <= _target(model, threads) else "MISS"
            print(f"{model:8} {threads:7d} {ours['median_ms']:13.2f} {ref['median_ms']:9.2f} {ratio:6.2f} "
                  f"{'<=' + str(_target(model, threads)):>7} {verdict:4}  {ours['first_loss']:.5f}/{ref['first_loss']:.5f}"
                  f"  (min-step ratio {min_ratio:.2f}, CPU-time ratio {cpu_ratio:.2f})")
            results.append({"model": model, "threads": threads, "time": t, "min_ratio": min_ratio,
                            "cpu_ratio": cpu_ratio})
        if model == "cnn":
            threads = args.threads[0]
            mem = {fw: _run(["memory", fw, model, threads, steps, args.warmup], threads,
                            MALLOC_MMAP_THRESHOLD_="131072", DISTTORCH_MALLOC_TUNING="0")
                   for fw in ("disttorch", "torch")}
            ours, ref = mem["disttorch"], mem["torch"]
            ratio = ours["step_peak_mb"] / max(ref["step_peak_mb"], 1e-9)
            print(f"cnn step peak memory ({threads} thread(s), RSS above the level between steps): disttorch "
                  f"{ours['step_peak_mb']:.1f} MB, torch {ref['step_peak_mb']:.1f} MB, ratio {ratio:.2f} "
                  f"({'ok' if ratio <= MEMORY_TARGET else 'MISS'} <= {MEMORY_TARGET})")
            print(f"cnn state between steps (params, grads, Adam state; RSS above the import): disttorch "
                  f"{ours['state_mb']:.1f} MB, torch {ref['state_mb']:.1f} MB")
            results.append({"model": model, "threads": threads, "memory": mem})
    if args.json:
        print(json.dumps(results, indent=1))


if __name__ == "__main__":
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        kind, rest = sys.argv[2], sys.argv[3:]
        if kind == "time":
            print(json.dumps(time_worker(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]))))
        else:
            print(json.dumps(memory_worker(rest[0], rest[1], int(rest[2]), int(rest[3]), int(rest[4]))))
    else:
        main()
