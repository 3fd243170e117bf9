"""Tensor creation: from data, constants, ranges, random draws, and the ``*_like`` family."""
from __future__ import annotations

import numbers

import numpy as np

from .. import _backend
from .. import _dtype as D
from .. import _random_recipes as recipes
from .._device import as_device
from ..random import generator_or_default, rng
from ..tensor import Tensor


def _infer_np_dtype(data):
    """PyTorch's dtype inference for Python data: bool < int (int64) < float (default dtype)."""
    kind = -1  # no element seen: an empty list is a float tensor
    stack = [data]
    while stack:
        x = stack.pop()
        if isinstance(x, Tensor):
            d = x.dtype
            kind = max(kind, d._category)
            if d._category == 2 and x.dtype is not D.get_default_dtype() and kind == 2:
                return x.dtype.np  # a float tensor inside a list keeps its dtype
        elif isinstance(x, (bool, np.bool_)):
            kind = max(kind, 0)
        elif isinstance(x, (numbers.Integral,)):
            kind = max(kind, 1)
        elif isinstance(x, numbers.Real):
            kind = max(kind, 2)
        elif isinstance(x, numbers.Complex):
            kind = max(kind, 3)
        elif isinstance(x, (list, tuple)):
            stack.extend(x)
        elif isinstance(x, np.ndarray):
            return None
        else:
            raise TypeError(f"Could not infer dtype of {type(x).__name__}")
    if kind < 0:
        return D.get_default_dtype().np
    return [np.bool_, np.int64, D.get_default_dtype().np, np.complex64][kind]


def _to_nested(data):
    if isinstance(data, Tensor):
        return _backend.to_host(data._data)
    if isinstance(data, (list, tuple)):
        return [_to_nested(x) for x in data]
    return data


def _array_from_data(data, dtype=None):
    """A fresh array from scalars, (nested) sequences, arrays or tensors."""
    npd = None if dtype is None else D.as_dtype(dtype).np
    if isinstance(data, Tensor):
        arr = _backend.to_host(data._data)
        return np.array(arr, dtype=npd if npd is not None else arr.dtype, copy=True)
    if isinstance(data, np.ndarray):
        D.from_numpy_dtype(data.dtype)
        return np.array(data, dtype=npd if npd is not None else data.dtype, copy=True)
    if isinstance(data, np.generic):
        return np.array(data, dtype=npd if npd is not None else data.dtype)
    if hasattr(data, "__cuda_array_interface__"):
        return np.array(_backend.to_host(data), dtype=npd)
    if npd is None:
        npd = _infer_np_dtype(data)
    if isinstance(data, (list, tuple)):
        data = _to_nested(data)
        if len(data) == 0:
            return np.zeros((0,), dtype=npd if npd is not None else D.get_default_dtype().np)
    try:
        if npd is not None and np.dtype(npd).kind in "iu":
            arr = np.array(data)
            if arr.dtype.kind == "f":
                arr = np.trunc(arr)
            return arr.astype(npd)
        return np.array(data, dtype=npd)
    except (ValueError, TypeError) as e:
        _check_nested_lengths(data)
        raise ValueError(f"expected sequence of equal-length rows to build a tensor: {e}") from None


def _check_nested_lengths(data):
    """Raises PyTorch's error for ragged nested sequences (shape taken from the first elements)."""
    shape, x = [], data
    while isinstance(x, (list, tuple, np.ndarray)):
        shape.append(len(x))
        if not len(x):
            break
        x = x[0]

    def walk(x, d):
        if d == len(shape):
            if isinstance(x, (list, tuple, np.ndarray)):
                raise TypeError(f"'{type(x).__name__}' object cannot be interpreted as a number")
            return
        if not isinstance(x, (list, tuple, np.ndarray)):
            raise TypeError("not a sequence")
        if len(x) != shape[d]:
            raise ValueError(f"expected sequence of length {shape[d]} at dim {d} (got {len(x)})")
        for e in x:
            walk(e, d + 1)

    walk(data, 0)


def _place(arr, device):
    if device is None:
        return arr
    dev = as_device(device)
    if dev.type == "cuda":
        return _backend.to_cuda(arr, dev.index)  # index None: the current GPU, as PyTorch's "cuda"
    return _backend.to_host(arr)


def tensor(data, *, dtype=None, device=None, requires_grad=False, pin_memory=False):
    """A new tensor copying ``data`` (scalar, nested sequence, NumPy array or tensor)."""
    if _backend.is_cuda_array(data):  # a CuPy array: copied on its GPU, as torch.tensor copies a CUDA array
        D.from_numpy_dtype(data.dtype)
        arr = data.astype(D.as_dtype(dtype).np if dtype is not None else data.dtype, copy=True)
        return _finish(arr, device, requires_grad)
    return _finish(_array_from_data(data, dtype), device, requires_grad)


def as_tensor(data, dtype=None, device=None):
    """Like ``tensor`` but shares memory with a NumPy array or tensor when no conversion is needed."""
    if isinstance(data, Tensor):
        out = data
        if dtype is not None:
            out = out.to(D.as_dtype(dtype))
        if device is not None:
            out = out.to(device)
        return out
    if isinstance(data, np.ndarray) and (dtype is None or D.as_dtype(dtype).np == data.dtype) and device in (None, "cpu"):
        D.from_numpy_dtype(data.dtype)
        return Tensor._wrap(data)
    if _backend.is_cuda_array(data) and (dtype is None or D.as_dtype(dtype).np == data.dtype) and (
            device is None or _is_device_of(as_device(device), data)):
        D.from_numpy_dtype(data.dtype)
        return Tensor._wrap(data)  # shares the CuPy array's memory, as torch.as_tensor does
    return tensor(data, dtype=dtype, device=device)


asarray = as_tensor


def _is_device_of(dev, array):
    """Whether CuPy ``array`` already lives on ``dev`` ("cuda" without an index accepts any GPU)."""
    return dev.type == "cuda" and dev.index in (None, _backend.device_index_of(array))


def from_numpy(ndarray):
    """A tensor sharing memory with ``ndarray``."""
    if not isinstance(ndarray, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(ndarray).__name__})")
    D.from_numpy_dtype(ndarray.dtype)
    return Tensor._wrap(ndarray)


def _size(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    elif len(size) == 1 and hasattr(size[0], "__len__") and not isinstance(size[0], Tensor):
        size = tuple(size[0])
    out = []
    for s in size:
        if isinstance(s, Tensor):
            s = s.item()
        if not isinstance(s, (int, np.integer)):
            raise TypeError(f"size must be a tuple of ints, but got {type(s).__name__}")
        if s < 0:
            raise RuntimeError(f"Trying to create tensor with negative dimension {s}: {list(size)}")
        out.append(int(s))
    return tuple(out)


def _dt(dtype):
    return (D.as_dtype(dtype) if dtype is not None else D.get_default_dtype()).np


def _finish(arr, device, requires_grad):
    t = Tensor._wrap(_place(arr, device))
    if requires_grad:
        if arr.dtype.kind not in "fc":  # factories word it differently from requires_grad_()
            raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
        t._requires_grad = True
    return t


def zeros(*size, dtype=None, device=None, requires_grad=False, out=None):
    return _finish(np.zeros(_size(size), dtype=_dt(dtype)), device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad=False, out=None):
    return _finish(np.ones(_size(size), dtype=_dt(dtype)), device, requires_grad)


def empty(*size, dtype=None, device=None, requires_grad=False, memory_format=None, pin_memory=False):
    return _finish(np.empty(_size(size), dtype=_dt(dtype)), device, requires_grad)


def full(size, fill_value, *, dtype=None, device=None, requires_grad=False):
    if dtype is None:
        if isinstance(fill_value, (bool, np.bool_)):
            dtype = D.bool
        elif isinstance(fill_value, numbers.Integral):
            dtype = D.int64
        elif isinstance(fill_value, Tensor):
            dtype = fill_value.dtype
            fill_value = fill_value.item()
    return _finish(np.full(_size((size,) if isinstance(size, int) else (tuple(size),)), fill_value, dtype=_dt(dtype)), device, requires_grad)


def eye(n, m=None, *, dtype=None, device=None, requires_grad=False):
    return _finish(np.eye(n, m, dtype=_dt(dtype)), device, requires_grad)


def arange(start, end=None, step=1, *, dtype=None, device=None, requires_grad=False):
    """Values in ``[start, end)``; int64 unless an argument is a float (then the default dtype)."""
    vals = [v.item() if isinstance(v, Tensor) else v for v in (start, end, step)]
    start, end, step = vals
    if end is None:
        start, end = 0, start
    if step == 0:
        raise RuntimeError("step must be nonzero")
    if (end - start) / step < 0:
        raise RuntimeError("upper bound and lower bound inconsistent with step sign")
    if dtype is None:
        isfloat = any(isinstance(v, float) for v in (start, end, step))
        dtype = D.get_default_dtype() if isfloat else D.int64
    npd = D.as_dtype(dtype).np
    n = int(np.ceil((end - start) / step))
    arr = (start + np.arange(n, dtype=np.float64 if npd.kind == "f" else np.int64) * step).astype(npd)
    return _finish(arr, device, requires_grad)


def range_(start, end, step=1, *, dtype=None, device=None, requires_grad=False):
    return arange(start, end + step / 2 if isinstance(step, float) else end + 1, step, dtype=dtype or D.get_default_dtype(), device=device, requires_grad=requires_grad)


def linspace(start, end, steps, *, dtype=None, device=None, requires_grad=False):
    return _finish(np.linspace(start, end, steps).astype(_dt(dtype)), device, requires_grad)


def logspace(start, end, steps, base=10.0, *, dtype=None, device=None, requires_grad=False):
    return _finish(np.logspace(start, end, steps, base=base).astype(_dt(dtype)), device, requires_grad)


def _like_device(input, device):
    """``*_like`` factories default to the source tensor's device."""
    return device if device is not None else (input.device if input.is_cuda else None)


def _like(fn, input, dtype, device, requires_grad, *args):
    dt = D.as_dtype(dtype).np if dtype is not None else input._data.dtype
    arr = fn(input._data.shape, *args, dt)
    return _finish(arr, _like_device(input, device), requires_grad)


def zeros_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return _like(lambda s, d: np.zeros(s, d), input, dtype, device, requires_grad)


def ones_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return _like(lambda s, d: np.ones(s, d), input, dtype, device, requires_grad)


def empty_like(input, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return _like(lambda s, d: np.empty(s, d), input, dtype, device, requires_grad)


def full_like(input, fill_value, *, dtype=None, device=None, requires_grad=False, memory_format=None):
    return _like(lambda s, d: np.full(s, fill_value, d), input, dtype, device, requires_grad)


def rand_like(input, *, dtype=None, device=None, requires_grad=False, generator=None):
    return rand(*input.shape, dtype=dtype or input.dtype, device=_like_device(input, device), requires_grad=requires_grad,
                generator=generator)


def randn_like(input, *, dtype=None, device=None, requires_grad=False, generator=None):
    return randn(*input.shape, dtype=dtype or input.dtype, device=_like_device(input, device), requires_grad=requires_grad,
                 generator=generator)


def randint_like(input, low=0, high=None, *, dtype=None, device=None, requires_grad=False):
    if high is None:
        low, high = 0, low
    return randint(low, high, tuple(input.shape), dtype=dtype or input.dtype, device=_like_device(input, device))


def rand(*size, generator=None, dtype=None, device=None, requires_grad=False, out=None):
    """Uniform samples on [0, 1) (PyTorch CPU's numbers for the same seed)."""
    npd = _dt(dtype)
    arr = recipes.uniform(generator_or_default(generator), _size(size), npd)
    return _finish(arr, device, requires_grad)


def randn(*size, generator=None, dtype=None, device=None, requires_grad=False, out=None):
    """Standard normal samples (PyTorch CPU's numbers for the same seed)."""
    npd = _dt(dtype)
    arr = recipes.normal(generator_or_default(generator), _size(size), npd)
    return _finish(arr, device, requires_grad)


def randint(low=0, high=None, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    """Integers uniform on [low, high); int64 by default."""
    if size is None:
        if high is None:
            raise TypeError("randint() missing required argument 'size'")
        low, high, size = 0, low, high
    if high is None:
        low, high = 0, low
    if low >= high:
        raise RuntimeError(f"random_ expects 'from' to be less than 'to', but got from={low} >= to={high}")
    npd = (D.as_dtype(dtype) if dtype is not None else D.int64).np
    shape = _size((size,) if isinstance(size, int) else (tuple(size),))
    arr = recipes.randint(generator_or_default(generator), int(low), int(high), shape, npd)
    return _finish(arr, device, requires_grad)


def randperm(n, *, generator=None, dtype=None, device=None, requires_grad=False):
    if n < 0:
        raise RuntimeError(f"n must be non-negative, got{n}")
    npd = (D.as_dtype(dtype) if dtype is not None else D.int64).np
    return _finish(recipes.randperm(generator_or_default(generator), int(n), npd), device, requires_grad)


def normal(mean=0.0, std=1.0, size=None, *, generator=None, dtype=None, device=None, requires_grad=False):
    """Normal samples; ``mean``/``std`` may be tensors (elementwise) or numbers with ``size``."""
    g = generator_or_default(generator)
    if isinstance(mean, Tensor) or isinstance(std, Tensor):
        # draws come from the host stream (the same numbers on every device), then join the tensors' device
        ref = mean if isinstance(mean, Tensor) else std
        m = _backend.to_host(mean._data) if isinstance(mean, Tensor) else mean
        s = _backend.to_host(std._data) if isinstance(std, Tensor) else std
        if isinstance(std, Tensor) and (s < 0).any():
            raise RuntimeError("normal expects all elements of std >= 0.0")
        shape = np.broadcast_shapes(np.shape(m), np.shape(s))
        npd = ref._data.dtype
        if isinstance(std, Tensor):
            # PyTorch draws N(0, 1) into the output, then multiplies by std and adds mean (two roundings)
            arr = recipes.normal(g, shape, npd) * np.asarray(s, dtype=npd) + np.asarray(m, dtype=npd)
        else:  # a number std is drawn with (as N(0, std)), then mean is added
            arr = recipes.normal(g, shape, npd, 0.0, float(s)) + np.asarray(m, dtype=npd)
        arr = arr.astype(npd, copy=False)
        return _finish(arr, device if device is not None else ref.device, requires_grad)
    if std < 0:
        raise RuntimeError(f"normal expects std >= 0.0, but found std {std}")
    if size is None:
        raise TypeError("normal() with float mean and std needs a size")
    arr = recipes.normal(g, _size((tuple(size),) if not isinstance(size, int) else (size,)), _dt(dtype), mean, std)
    return _finish(arr, device, requires_grad)


def bernoulli(input, p=None, *, generator=None):
    g = generator_or_default(generator)
    if p is None:
        draw = recipes.bernoulli_tensor(g, np.asarray(_backend.to_host(input._data)))
    else:
        draw = recipes.bernoulli_scalar(g, input._data.shape, float(p))
    draw = draw.astype(input._data.dtype)
    return Tensor._wrap(_backend.like(draw, input._data))


def multinomial(input, num_samples, replacement=False, *, generator=None):
    """Indices drawn from the rows of ``input`` (non-negative weights)."""
    w = np.asarray(_backend.to_host(input._data), dtype=np.float64)
    if (w < 0).any():
        raise RuntimeError("probability tensor contains either `inf`, `nan` or element < 0")
    rows = w.reshape(-1, w.shape[-1])
    if replacement and num_samples > 1 and (rows.sum(axis=1) > 0).all():
        # PyTorch's CPU recipe (one uniform per sample, binary search in the cumulative weights)
        src = np.asarray(_backend.to_host(input._data))
        out = recipes.multinomial_with_replacement(generator_or_default(generator), src.reshape(rows.shape), num_samples)
        return Tensor._wrap(_backend.like(out.reshape(w.shape[:-1] + (num_samples,)), input._data))
    for r in rows:
        if r.sum() <= 0:
            raise RuntimeError("invalid multinomial distribution (sum of probabilities <= 0)")
        if not replacement and num_samples > (r > 0).sum():
            raise RuntimeError("cannot sample n_sample > prob_dist.size(-1) samples without replacement")
    # PyTorch's CPU recipe: an exponential race (the largest w / q, q ~ Exp(1))
    src = np.asarray(_backend.to_host(input._data))
    out = recipes.multinomial_without_replacement(generator_or_default(generator), src.reshape(rows.shape), num_samples)
    return Tensor._wrap(_backend.like(out.astype(np.int64).reshape(w.shape[:-1] + (num_samples,)), input._data))


def poisson(input, generator=None):
    draw = rng(generator).poisson(_backend.to_host(input._data)).astype(input._data.dtype)
    return Tensor._wrap(_backend.like(draw, input._data))


def _copy_into(out, result):
    """Writes ``result`` into the preallocated ``out`` tensor (resizing like PyTorch when empty)."""
    if tuple(out.shape) != tuple(result.shape):
        if out.numel() == 0:
            out._data = _backend.array_module(out._data).empty(result._data.shape, dtype=out._data.dtype)
        else:
            raise RuntimeError(f"output with shape {list(out.shape)} doesn't match the broadcast shape {list(result.shape)}")
    if type(result._data) is not type(out._data):
        raise RuntimeError(f"Expected out tensor to have device {result.device}, but got {out.device} instead")
    out._data[...] = result._data
    out._vc[0] += 1
    return out
