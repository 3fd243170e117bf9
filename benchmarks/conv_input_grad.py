"""The input gradient of a stride-1 convolution, three ways, next to PyTorch's (oneDNN).

    python benchmarks/conv_input_grad.py [--threads 1] [--repeats 15]

For each shape: ``conv_shifted.input_grad`` (kh*kw shifted GEMMs into an NCHW grid), the full
correlation with the flipped weight (``conv_nhwc.correlate_full``), the columns scattered back
(``conv_nhwc.backward`` with both other ways switched off: channels-last columns, or planar ones,
``conv_planar``, for 1-4 input channels), and PyTorch's
``convolution_backward`` for the input alone; medians in milliseconds, ratios against PyTorch.
The ``chosen`` column is the way ``conv_nhwc.backward`` takes for that shape
(``conv_shifted.suits``, then ``_input_grad_as_correlation``).
"""
from __future__ import annotations

import argparse

import numpy as np
from _timing import median_time

# (label, samples, input channels, output channels, input size, padding)
SHAPES = [
    ("CNN conv2", 64, 32, 64, 26, 0),
    ("16 -> 32 at 26x26", 32, 16, 32, 26, 0),
    ("RGB 3 -> 64 at 64x64", 16, 3, 64, 64, 1),
    ("32 -> 64 at 32x32", 16, 32, 64, 32, 1),
    ("64 -> 64 at 32x32", 16, 64, 64, 32, 1),
    ("64 -> 128 at 16x16", 16, 64, 128, 16, 1),
    ("64 -> 64 at 16x16", 16, 64, 64, 16, 1),
    ("128 at 8x8", 16, 128, 128, 8, 1),
    ("256 at 16x16", 8, 256, 256, 16, 1),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args()
    import torch

    import disttorch
    from disttorch.ops import conv_nhwc, conv_shifted
    from disttorch.ops.window import Window2d

    torch.set_num_threads(args.threads)
    disttorch.set_num_threads(args.threads)
    rng = np.random.default_rng(0)

    def ms(fn):
        return median_time(fn, args.repeats, warmup=2) * 1e3

    print(f"{args.threads} thread(s); ms per input gradient (3x3 kernel, stride 1)")
    print(f"{'shape':22} {'shifted':>8} {'correl.':>8} {'scatter':>8} {'torch':>8} {'chosen':>8} {'chosen/torch':>12}")
    for label, n, c, a, size, pad in SHAPES:
        out = size + 2 * pad - 2
        win = Window2d((3, 3), (1, 1), (1, 1), (pad,) * 4, (size, size), (out, out))
        y = rng.standard_normal((n, a, out, out), dtype=np.float32)
        w = rng.standard_normal((a, c, 3, 3), dtype=np.float32)
        shifted = ms(lambda: conv_shifted.input_grad(y, w, win, c))
        correlation = ms(lambda: conv_nhwc.correlate_full(y, w, win))
        suits, as_correlation = conv_shifted.suits, conv_nhwc._input_grad_as_correlation
        conv_shifted.suits = conv_nhwc._input_grad_as_correlation = lambda *_: False
        try:
            scatter = ms(lambda: conv_nhwc.backward(None, y, w, win, c, True, False))
        finally:
            conv_shifted.suits, conv_nhwc._input_grad_as_correlation = suits, as_correlation
        ty, tw, tx = torch.from_numpy(y), torch.from_numpy(w), torch.empty(n, c, size, size)
        reference = ms(lambda: torch.ops.aten.convolution_backward(
            ty, tx, tw, None, (1, 1), (pad, pad), (1, 1), False, (0, 0), 1, (True, False, False)))
        if suits(y, win, c, a):
            chosen, name = shifted, "shifted"
        elif as_correlation(win, c, a, out * out):
            chosen, name = correlation, "correl."
        else:
            chosen, name = scatter, "scatter"
        print(f"{label:22} {shifted:8.2f} {correlation:8.2f} {scatter:8.2f} {reference:8.2f} {name:>8} "
              f"{chosen / reference:12.2f}")


if __name__ == "__main__":
    main()
