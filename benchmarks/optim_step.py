"""The optimizer step alone: disttorch through MKL's fused passes (``disttorch/optim/_fused.py``),
disttorch with ``DISTTORCH_BLAS=numpy`` (its NumPy passes) and PyTorch, side by side.

    python benchmarks/optim_step.py [--threads 1 2] [--rounds 3] [--repeats 40]

Parameter sets (shapes as in ``benchmarks/train_step.py``, gradients fixed, state warmed up):

  * mlp: MLP 784-512-512-10, 670K parameters, SGD (lr 0.01, momentum 0.9);
  * cnn: the CNN's 1.2M parameters, Adam (lr 1e-3);
  * gpt: the GPT's 1.3M parameters (4 blocks, d_model 128, vocabulary 2000), AdamW (lr 3e-4,
    weight decay 0.1).

Every (library, thread count) runs in a subprocess of its own, with the thread variables set
before import; the libraries alternate for ``--rounds`` rounds and each keeps its best median
(load from other processes on a shared machine only ever slows a run down). Times are
milliseconds per ``optimizer.step()``; ratios are against PyTorch, and "numpy/mkl" is the fused
path's speed-up over disttorch's NumPy passes.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

from _timing import median_time

LIBRARIES = ("mkl", "numpy", "torch")


def _shapes(model):
    if model == "mlp":
        return [(512, 784), (512,), (512, 512), (512,), (10, 512), (10,)]
    if model == "cnn":
        return [(32, 1, 3, 3), (32,), (64, 32, 3, 3), (64,), (128, 9216), (128,), (10, 128), (10,)]
    d, vocab, seq, layers = 128, 2000, 64, 4
    block = [(d,), (d,), (3 * d, d), (3 * d,), (d, d), (d,), (d,), (d,), (4 * d, d), (4 * d,), (d, 4 * d), (d,)]
    return [(vocab, d), (seq, d)] + block * layers + [(d,), (d,), (vocab, d), (vocab,)]


def _optimizer(tl, model, params):
    if model == "mlp":
        return tl.optim.SGD(params, lr=0.01, momentum=0.9)
    if model == "cnn":
        return tl.optim.Adam(params, lr=1e-3)
    return tl.optim.AdamW(params, lr=3e-4, weight_decay=0.1)


def _measure(library, threads, repeats):
    import numpy as np

    if library == "torch":
        import torch as tl

        tl.set_num_threads(threads)
    else:
        import disttorch as tl
        from disttorch import _gemm

        tl.set_num_threads(threads)
        assert _gemm.mkl_available() == (library == "mkl"), f"DISTTORCH_BLAS did not give {library}"
    rows = {}
    for model in ("mlp", "cnn", "gpt"):
        rng = np.random.default_rng(0)
        shapes = _shapes(model)
        params = [tl.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True) for s in shapes]
        for p, s in zip(params, shapes):
            p.grad = tl.tensor(rng.standard_normal(s).astype(np.float32) * 1e-2)
        opt = _optimizer(tl, model, params)
        rows[model] = {"ms": median_time(opt.step, repeats, warmup=5) * 1e3,
                       "params": int(sum(np.prod(s) for s in shapes))}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=40)
    parser.add_argument("--_child", nargs=2, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        library, threads = args._child[0], int(args._child[1])
        print(json.dumps(_measure(library, threads, args.repeats)))
        return
    for threads in args.threads:
        env = {**os.environ, **{v: str(threads) for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}}
        best = {}
        for _ in range(args.rounds):
            for library in LIBRARIES:
                lib_env = env if library == "torch" else {**env, "DISTTORCH_BLAS": library}
                out = subprocess.run([sys.executable, __file__, "--_child", library, str(threads),
                                      "--repeats", str(args.repeats)],
                                     env=lib_env, capture_output=True, text=True, check=True)
                rows = json.loads(out.stdout.strip().splitlines()[-1])
                for model, row in rows.items():
                    key = (library, model)
                    if key not in best or row["ms"] < best[key]["ms"]:
                        best[key] = row
        print(f"\n{threads} thread(s), best of {args.rounds} rounds; ms per optimizer.step()")
        print(f"{'set':5} {'optimizer':10} {'params':>9} {'mkl ms':>8} {'numpy ms':>9} {'torch ms':>9} "
              f"{'mkl/torch':>10} {'numpy/torch':>12} {'numpy/mkl':>10}")
        names = {"mlp": "SGD mom.", "cnn": "Adam", "gpt": "AdamW"}
        for model in ("mlp", "cnn", "gpt"):
            mkl, numpy_, torch_ = (best[(lib, model)]["ms"] for lib in LIBRARIES)
            print(f"{model:5} {names[model]:10} {best[('mkl', model)]['params']:9d} {mkl:8.3f} {numpy_:9.3f} "
                  f"{torch_:9.3f} {mkl / torch_:10.2f} {numpy_ / torch_:12.2f} {numpy_ / mkl:10.2f}")


if __name__ == "__main__":
    main()
