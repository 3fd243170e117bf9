"""Where autocast acts: wrappers installed (once, on first use of autocast) around the ops of
PyTorch's autocast lists. Outside autocast a wrapper costs one flag test and calls the op.

- lower precision (matmul family, linear, conv): floating inputs are rounded to the autocast dtype;
  the op runs in float32 on the rounded values; the result is rounded to the autocast dtype.
- float32 (losses): lower-precision floating inputs are widened to float32.
- widen-and-return (ops disttorch has no bfloat16 kernel for): on bfloat16 / float16 inputs they
  run in float32 and the result takes the input's dtype back, as PyTorch's output dtype.
"""
from __future__ import annotations

import functools

from .. import _dtype
from ..tensor import Tensor
from . import autocast_mode as _mode

_installed = False


def _device_type(tensors):
    for t in tensors:
        if isinstance(t, Tensor):
            return "cuda" if t.is_cuda else "cpu"
    return None


def _cast(t, dtype):
    """``t.to(dtype)`` without Tensor.to's argument parsing (autocast casts several times per op)."""
    from ..ops.pointwise import cast
    return cast(t, dtype)


def _round_then_widen(t, low):
    """``t`` rounded to ``low`` precision, held as float32 so NumPy's float32 kernels can run on it
    (float64 is left alone, as PyTorch's autocast leaves it)."""
    if not isinstance(t, Tensor) or not t.dtype.is_floating_point or t.dtype is _dtype.float64:
        return t
    if t.dtype is not low:
        t = _cast(t, low)
    return _cast(t, _dtype.float32)


def _lower_precision_apply(orig):
    def apply(*tensors, **params):
        if not _mode._active or not _mode.any_enabled():
            return orig(*tensors, **params)
        low = _mode.active_dtype(_device_type(tensors))
        if low is None:
            return orig(*tensors, **params)
        args = [_round_then_widen(t, low) for t in tensors]
        kwargs = {k: _round_then_widen(v, low) for k, v in params.items()}
        with _mode.suspended():  # the ops inside run on the rounded operands as they are
            out = orig(*args, **kwargs)
        return _cast(out, low) if isinstance(out, Tensor) and out.dtype is _dtype.float32 else out
    return apply


def _lower_precision_fn(orig):
    """Function-level half of the lower-precision policy: the operands are rounded before the
    function's own dtype checks run (they see float32 holding rounded values), and the result takes
    the autocast dtype."""
    inner = _lower_precision_apply(orig)

    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        if not _mode._active:
            return orig(*args, **kwargs)
        if _mode.any_enabled() and args and isinstance(args[0], str):  # einsum(equation, *operands)
            ops = args[1:]
            if len(ops) == 1 and isinstance(ops[0], (list, tuple)):
                ops = tuple(ops[0])
            return inner(args[0], *ops, **kwargs) if ops else orig(*args, **kwargs)
        return inner(*args, **kwargs)
    wrapper._autocast_wrapped = True
    return wrapper


def _is_low(t):
    """float16 or bfloat16 data. (NumPy's ``dtype.name`` is a slow Python property; kind and itemsize
    are plain attributes, and bfloat16 is NumPy's only 2-byte kind "V" type a tensor can hold.)"""
    if not isinstance(t, Tensor):
        return False
    d = t._data.dtype
    return d.itemsize == 2 and (d.kind == "f" or d.kind == "V")


def _float32_fn(orig):
    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        if _mode._active and _mode.any_enabled() and _mode.active_dtype(_device_type(args)) is not None:
            args = [a.to(_dtype.float32) if _is_low(a) else a for a in args]
            kwargs = {k: v.to(_dtype.float32) if _is_low(v) else v for k, v in kwargs.items()}
        return orig(*args, **kwargs)
    wrapper._autocast_wrapped = True
    return wrapper


def _widen_fn(orig):
    @functools.wraps(orig)
    def wrapper(*args, **kwargs):
        if args and _is_low(args[0]) and kwargs.get("dtype") is None:
            low = args[0].dtype
            args = [a.to(_dtype.float32) if _is_low(a) else a for a in args]
            out = orig(*args, **kwargs)
            if isinstance(out, Tensor) and out.dtype is _dtype.float32:
                return out.to(low)
            if isinstance(out, tuple) and out and isinstance(out[0], Tensor):  # (values, indices)
                return type(out)((out[0].to(low), *out[1:])) if out[0].dtype is _dtype.float32 else out
            return out
        return orig(*args, **kwargs)
    wrapper._autocast_wrapped = True
    return wrapper


# Op classes whose ``apply`` every matmul / linear / conv entry point goes through.
_LOWER_PRECISION_OPS = (("ops.linalg", ("MmBackward0", "BmmBackward0", "MvBackward0", "DotBackward0",
                                        "MatmulBackward0", "AddmmBackward0", "EinsumBackward")),
                        ("ops.nn", ("LinearAddmm", "LinearMm")),
                        ("ops.conv", ("ConvolutionBackward0",)))
_LOWER_PRECISION_FNS = ("matmul", "mm", "bmm", "addmm", "baddbmm", "einsum", "linear", "bilinear", "mv", "dot",
                        "conv1d", "conv2d", "conv_transpose1d", "conv_transpose2d", "__matmul__", "__rmatmul__")
_FLOAT32_FNS = ("cross_entropy", "nll_loss", "mse_loss", "l1_loss", "smooth_l1_loss", "huber_loss",
                "binary_cross_entropy", "binary_cross_entropy_with_logits", "kl_div", "margin_ranking_loss",
                "cosine_embedding_loss", "triplet_margin_loss", "soft_margin_loss", "poisson_nll_loss",
                "hinge_embedding_loss", "multi_margin_loss", "multilabel_margin_loss", "gaussian_nll_loss")
_WIDEN_FNS = ("softmax", "log_softmax", "gelu", "silu", "leaky_relu", "elu", "selu", "mish", "softplus", "hardtanh",
              "relu6", "max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
              "adaptive_avg_pool2d", "adaptive_max_pool2d", "mean", "tanh", "sigmoid", "exp", "log", "sqrt",
              "rsqrt", "scaled_dot_product_attention", "interpolate", "normalize", "var", "std", "erf", "batch_norm",
              "layer_norm", "group_norm")


def _namespaces():
    """Every loaded disttorch module: any of them may hold a wrapped function under some name."""
    import sys
    return [m for n, m in list(sys.modules.items())
            if m is not None and (n == "disttorch" or n.startswith("disttorch.")) and not n.startswith("disttorch.amp")]


def _wrap_everywhere(names, make):
    """Wraps each named function once and puts the wrapper wherever the original was: every
    disttorch module attribute and Tensor method holding that very object, whatever its name there
    (aliases such as ``inner`` for ``dot`` stay the same object as their op, as the op registry says)."""
    spaces = _namespaces()
    originals = {}
    for ns in spaces:
        for name in names:
            fn = vars(ns).get(name)
            if callable(fn) and not isinstance(fn, type) and not getattr(fn, "_autocast_wrapped", False):
                originals.setdefault(id(fn), fn)
    for name in names:  # methods defined on Tensor itself (not in any module namespace)
        fn = Tensor.__dict__.get(name)
        if callable(fn) and not getattr(fn, "_autocast_wrapped", False):
            originals.setdefault(id(fn), fn)
    wrappers = {key: make(fn) for key, fn in originals.items()}
    for holder in [*spaces, Tensor]:
        for attr, value in list(vars(holder).items()):
            wrapper = wrappers.get(id(value))
            if wrapper is not None and originals[id(value)] is value:
                setattr(holder, attr, wrapper)


def _rnn_direction_fn(orig):
    """PyTorch's CPU autocast runs a whole LSTM in the autocast dtype (its oneDNN LSTM kernel is on
    the lower-precision list; GRU and RNN return float32): round one layer-direction's
    inputs, state and weights, and give its outputs and final state the autocast dtype."""
    @functools.wraps(orig)
    def wrapper(mode, x, h, c, weights, reverse):
        low = _mode.active_dtype(_device_type([x])) if _mode.any_enabled() and mode == "LSTM" else None
        if low is None:  # GRU / RNN: their matmuls are autocast one by one, as PyTorch's decomposed ops
            return orig(mode, x, h, c, weights, reverse)

        def rnd(t):
            return None if t is None else _round_then_widen(t, low)

        def cast(t):
            return t.to(low) if isinstance(t, Tensor) and t.dtype is _dtype.float32 else t
        out, h, c = orig(mode, rnd(x), rnd(h), rnd(c), tuple(rnd(w) for w in weights), reverse)
        return cast(out), cast(h), cast(c)
    wrapper._autocast_wrapped = True
    return wrapper


def _suspend_in_backward():
    """Backward runs without autocast (its ops must keep the forward's dtypes)."""
    from ..autograd import engine
    orig = engine.run_backward
    if getattr(orig, "_autocast_wrapped", False):
        return

    @functools.wraps(orig)
    def run_backward(*args, **kwargs):
        if not _mode.any_enabled():
            return orig(*args, **kwargs)
        with _mode.suspended():
            return orig(*args, **kwargs)
    run_backward._autocast_wrapped = True
    engine.run_backward = run_backward


def install() -> None:
    """Installs the wrappers (idempotent)."""
    global _installed
    if _installed:
        return
    import importlib
    originals = []
    for module, names in _LOWER_PRECISION_OPS:
        mod = importlib.import_module(f"disttorch.{module}")
        for name in names:
            cls = getattr(mod, name, None)
            if cls is not None:
                originals.append((cls, cls.apply))  # bound to its own class before any is replaced
    for cls, orig in originals:
        cls.apply = staticmethod(_lower_precision_apply(orig))
    _wrap_everywhere(_LOWER_PRECISION_FNS, _lower_precision_fn)
    _wrap_everywhere(_FLOAT32_FNS, _float32_fn)
    _wrap_everywhere(_WIDEN_FNS, _widen_fn)
    from ..nn.modules import rnn
    if not getattr(rnn._run_direction, "_autocast_wrapped", False):
        rnn._run_direction = _rnn_direction_fn(rnn._run_direction)
    _suspend_in_backward()
    _installed = True
