"""Tensor: one NumPy/CuPy array plus PyTorch's autograd metadata.

Ops live in ``disttorch/ops``; their Tensor methods and operators are attached in
``disttorch/_tensor_methods.py`` so this file holds only the object itself: storage, metadata,
conversion and the autograd entry points.
"""
from __future__ import annotations

import numpy as np

from . import _backend
from ._device import CPU, as_device, device as _device_cls
from ._dtype import _FROM_NP, LEGACY_NAMES, as_dtype
from ._size import Size
from .autograd import engine as _engine
from .autograd.grad_mode import STATE
from .autograd.node import AccumulateGrad, _RemovableHandle

_TYPE_NAMES = {name: legacy + "Tensor" for name, legacy in LEGACY_NAMES.items()}  # torch.FloatTensor, ...


_size_of_shape = Size._of_shape  # Tensor.shape: no per-element int() of an array's shape

class Tensor:
    """A multi-dimensional array with PyTorch's semantics and autograd.

    ``_data`` is the array (shared with views and with ``numpy()``); ``_vc`` is the version counter,
    a one-element list shared by a tensor and its views so in-place writes through any of them are
    seen by backward's saved-tensor check.
    """

    __slots__ = ("_data", "_requires_grad", "grad", "grad_fn", "_vc", "__dict__", "__weakref__")

    # Rarely set fields default at class level, so wrapping an op's output sets only five slots.
    _acc = None
    _tensor_hooks = None
    _post_acc_hooks = None
    _retains_grad = False
    _base = None
    _views = None  # weakrefs to views taken with autograd (autograd/inplace.py refresh_views)

    __array_priority__ = 1000  # make ndarray (op) Tensor defer to Tensor's reflected operators

    def __init__(self, *args, dtype=None, device=None, requires_grad=False):
        # torch.Tensor(2, 3) is uninitialised float storage; torch.Tensor([1, 2]) copies data.
        from .ops.creation import _array_from_data
        d = as_dtype(dtype) if dtype is not None else None
        from ._dtype import get_default_dtype
        d = d or get_default_dtype()
        if len(args) == 1 and not isinstance(args[0], (int, np.integer)):
            arr = _array_from_data(args[0], d)
        elif all(isinstance(a, (int, np.integer)) for a in args):
            arr = np.zeros(tuple(int(a) for a in args), dtype=d.np)
        else:
            raise TypeError(f"Tensor(): invalid arguments {args!r}")
        _init_fields(self, arr)
        if device is not None and as_device(device).type == "cuda":
            self._data = _backend.to_cuda(arr, as_device(device).index)
        if requires_grad:
            self.requires_grad_(True)

    # ---- construction ---------------------------------------------------------------------
    @staticmethod
    def _wrap(array, requires_grad=False):
        """A tensor sharing ``array`` (no copy). Internal constructor used by every op."""
        t = _new(Tensor)
        t._data = array
        t._requires_grad = requires_grad
        t.grad = None
        t.grad_fn = None
        t._vc = [0]
        return t

    def _view_of(self, array):
        """A tensor on ``array`` (a view of ``self._data``) sharing this tensor's version counter."""
        t = Tensor._wrap(array)
        t._vc = self._vc
        t._base = self if self._base is None else self._base
        return t

    # ---- metadata ---------------------------------------------------------------------------
    @property
    def shape(self):
        return _size_of_shape(self._data.shape)

    def size(self, dim=None):
        """The shape as ``disttorch.Size``, or the length of one dimension."""
        if dim is None:
            return _size_of_shape(self._data.shape)
        return self._data.shape[_wrap_dim(dim, self._data.ndim)]

    @property
    def dtype(self):
        return _FROM_NP[self._data.dtype]

    @property
    def device(self):
        if type(self._data) is np.ndarray:
            return CPU
        idx = _backend.device_index_of(self._data)
        return _device_cls("cuda", idx or 0) if idx is not None else CPU

    @property
    def is_cuda(self):
        return _backend.is_cuda_array(self._data)

    @property
    def is_cpu(self):
        return type(self._data) is np.ndarray

    # Devices and layouts disttorch never uses: PyTorch code tests these flags, all False here.
    is_xpu = is_mps = is_meta = is_xla = is_ipu = is_vulkan = is_maia = is_mtia = property(lambda self: False)
    is_sparse = is_sparse_csr = is_quantized = is_mkldnn = is_nested = property(lambda self: False)

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    ndimension = dim

    def numel(self):
        return int(self._data.size)

    nelement = numel

    def element_size(self):
        return self._data.itemsize

    @property
    def itemsize(self):
        return self._data.itemsize

    @property
    def nbytes(self):
        return self._data.nbytes

    def stride(self, dim=None):
        st = tuple(s // self._data.itemsize for s in self._data.strides)
        return st if dim is None else st[_wrap_dim(dim, self._data.ndim)]

    def is_contiguous(self, memory_format=None):
        return bool(self._data.flags.c_contiguous)

    def data_ptr(self):
        return int(self._data.__array_interface__["data"][0]) if type(self._data) is np.ndarray else int(self._data.data.ptr)

    def is_floating_point(self):
        return self.dtype.is_floating_point

    def is_complex(self):
        return self.dtype.is_complex

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def _version(self):
        return self._vc[0]

    def _bump(self):
        self._vc[0] += 1

    @property
    def layout(self):
        return "torch.strided"

    # ---- autograd flags -----------------------------------------------------------------------
    @property
    def requires_grad(self):
        return self._requires_grad

    @requires_grad.setter
    def requires_grad(self, flag):
        self.requires_grad_(flag)

    def requires_grad_(self, requires_grad=True):
        """Sets ``requires_grad`` on a leaf; integer tensors cannot require grad."""
        requires_grad = bool(requires_grad)
        if self.grad_fn is not None:
            if not requires_grad:
                raise RuntimeError(
                    "you can only change requires_grad flags of leaf variables. If you want to use a computed "
                    "variable in a subgraph that doesn't require differentiation use var_no_grad = var.detach().")
            return self
        if requires_grad and self._data.dtype.kind not in "fc" and self._data.dtype.name != "bfloat16":
            raise RuntimeError("only Tensors of floating point dtype can require gradients")
        self._requires_grad = requires_grad
        return self

    @property
    def data(self):
        """A tensor sharing this one's array, outside the graph (``x.data`` in PyTorch)."""
        t = Tensor._wrap(self._data)
        t._vc = [self._vc[0]]
        return t

    @data.setter
    def data(self, value):
        self._data = value._data if isinstance(value, Tensor) else np.asarray(value)

    def detach(self):
        """A tensor sharing memory with this one, cut from the graph."""
        t = Tensor._wrap(self._data)
        t._vc = self._vc
        return t

    def detach_(self):
        if self._base is not None and self._base.grad_fn is not None:
            raise RuntimeError(
                "Can't detach views in-place. Use detach() instead. If you are using DistributedDataParallel (DDP) "
                "for training, and gradient_as_bucket_view is set as True, gradients are views of DDP buckets, and "
                "hence detach_() cannot be called on these gradients. To fix this error, please refer to the "
                "Optimizer.zero_grad() function in torch/optim/optimizer.py as the solution.")
        self.grad_fn = None
        self._requires_grad = False
        return self

    def _grad_accumulator(self):
        acc = self._acc
        if acc is None:
            acc = self._acc = AccumulateGrad(self)
        return acc

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        """Computes the gradient of this tensor w.r.t. graph leaves (accumulated into ``.grad``)."""
        _engine.backward([self], None if gradient is None else [gradient], retain_graph, create_graph,
                         inputs=inputs)

    def register_hook(self, hook):
        """``hook(grad) -> Tensor or None`` runs when the gradient w.r.t. this tensor is computed."""
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._tensor_hooks is None:
            self._tensor_hooks = []
            node = self.grad_fn if self.grad_fn is not None else self._grad_accumulator()
            node.register_prehook(_TensorHookRunner(self._tensor_hooks))
        self._tensor_hooks.append(hook)
        return _RemovableHandle(self._tensor_hooks, hook)

    def register_post_accumulate_grad_hook(self, hook):
        """``hook(tensor)`` runs after a leaf's ``.grad`` has been updated (DDP uses it)."""
        if self.grad_fn is not None:
            raise RuntimeError("post accumulate grad hooks cannot be registered on non-leaf tensors")
        if not self._requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that doesn't require gradient")
        if self._post_acc_hooks is None:
            self._post_acc_hooks = []
        self._post_acc_hooks.append(hook)
        return _RemovableHandle(self._post_acc_hooks, hook)

    def retain_grad(self):
        """Keeps the gradient of a non-leaf in ``.grad`` after backward."""
        if not self._requires_grad:
            raise RuntimeError("can't retain_grad on Tensor that has requires_grad=False")
        if self.grad_fn is None or self._retains_grad:
            return
        self._retains_grad = True
        self._retain_hook = (self.grad_fn, self.grad_fn.register_prehook(_RetainGrad(self)))

    def _history_rewritten(self):
        """Called after an in-place op gave this tensor a new ``grad_fn``: a retained gradient is
        the new version's, as in PyTorch, so the retain hook moves to the new node."""
        node, handle = getattr(self, "_retain_hook", (None, None))
        if not self._retains_grad or node is self.grad_fn:
            return
        if handle is not None:
            handle.remove()
        hook = self.grad_fn.register_prehook(_RetainGrad(self)) if self.grad_fn is not None else None
        self._retain_hook = (self.grad_fn, hook)

    @property
    def retains_grad(self):
        return self._retains_grad

    # ---- conversion ---------------------------------------------------------------------------
    def numpy(self, force=False):
        """The NumPy array behind this tensor (shared memory, as PyTorch's)."""
        if self._requires_grad and not force:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. Use tensor.detach().numpy() instead.")
        if _backend.is_cuda_array(self._data):
            if not force:
                raise TypeError(f"can't convert {self.device} device type tensor to numpy. Use Tensor.cpu() to copy the "
                                "tensor to host memory first.")
            return _backend.to_host(self._data)
        return self._data

    def __array__(self, dtype=None, copy=None):
        arr = _backend.to_host(self._data)
        return arr if dtype is None else arr.astype(dtype, copy=False)

    def item(self):
        """The value of a one-element tensor as a Python number."""
        if self._data.size != 1:
            raise RuntimeError(f"a Tensor with {self._data.size} elements cannot be converted to Scalar")
        return self._data.reshape(()).item()

    def tolist(self):
        return _backend.to_host(self._data).tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iub" or self._data.size != 1:
            raise TypeError("only integer tensors of a single element can be converted to an index")
        return int(self.item())

    def __bool__(self):
        if self._data.size != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self.item())

    def __complex__(self):
        return complex(self.item())

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self._data.shape[0]

    def __iter__(self):
        if self._data.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self._data.shape[0]))

    def __hash__(self):
        return id(self)

    def __contains__(self, element):
        return bool((self == element).any())

    def __repr__(self):
        from ._tensor_str import tensor_repr
        return tensor_repr(self)

    __str__ = __repr__

    def __format__(self, spec):
        if self._data.ndim == 0:
            return format(self.item(), spec)
        return format(repr(self), spec)

    def __reduce_ex__(self, protocol):
        # Pickling (DataLoader workers, cloudpickle, weights_only=False checkpoints) keeps the
        # array and the leaf's requires_grad; like PyTorch, the graph is not pickled.
        if _backend.is_cuda_array(self._data):  # the bytes travel through the host; the tensor comes back on its GPU
            return (_rebuild_tensor, (_backend.to_host(self._data), self._requires_grad, type(self), str(self.device)))
        return (_rebuild_tensor, (_backend.to_host(self._data), self._requires_grad, type(self)))

    def __deepcopy__(self, memo):
        if self.grad_fn is not None:
            raise RuntimeError("Only Tensors created explicitly by the user (graph leaves) support the deepcopy protocol at the moment.")
        new = type(self)._wrap_like(self, self._data.copy())
        new._requires_grad = self._requires_grad
        if self.grad is not None:
            new.grad = self.grad.__deepcopy__(memo)
        memo[id(self)] = new
        return new

    @classmethod
    def _wrap_like(cls, src, array):
        t = Tensor._wrap(array)
        if cls is not Tensor:
            t.__class__ = cls
        return t

    # ---- device / dtype moves -----------------------------------------------------------------
    def to(self, *args, **kwargs):
        """``to(dtype)``, ``to(device)``, ``to(device, dtype)``, ``to(other)``; a no-op returns self."""
        dtype = kwargs.pop("dtype", None)
        dev = kwargs.pop("device", None)
        copy = kwargs.pop("copy", False)
        kwargs.pop("non_blocking", None)
        kwargs.pop("memory_format", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, Tensor):
                dtype, dev = a.dtype, a.device
            elif isinstance(a, (str, _device_cls, int)) and not isinstance(a, bool):
                dev = a
            else:
                dtype = a
        from .ops.pointwise import cast
        from .ops.shape import to_device
        out = self
        if dev is not None:
            out = to_device(out, as_device(dev))
        if dtype is not None:
            out = cast(out, as_dtype(dtype))
        if copy and out is self:
            out = self.clone()
        return out

    def cuda(self, device=None, non_blocking=False):
        return self.to("cuda" if device is None else as_device(device) if not isinstance(device, int) else _device_cls("cuda", device))

    def cpu(self):
        return self.to("cpu")

    def type(self, dtype=None, non_blocking=False):
        """Without an argument, the legacy type string (``torch.FloatTensor``); else ``to(dtype)``."""
        if dtype is None:
            name = _TYPE_NAMES[self.dtype.name]
            return ("torch.cuda." if self.is_cuda else "torch.") + name
        if isinstance(dtype, str):
            rev = {v: k for k, v in _TYPE_NAMES.items()}
            key = dtype.rsplit(".", 1)[-1]
            if key not in rev:
                raise ValueError(f"invalid type: '{dtype}'")
            dtype = rev[key]
        return self.to(as_dtype(dtype))

    def type_as(self, other):
        return self.to(other.dtype)

    def float(self):
        return self.to(_FROM_NP[np.dtype(np.float32)])

    def double(self):
        return self.to(_FROM_NP[np.dtype(np.float64)])

    def half(self):
        return self.to(_FROM_NP[np.dtype(np.float16)])

    def long(self):
        return self.to(_FROM_NP[np.dtype(np.int64)])

    def int(self):
        return self.to(_FROM_NP[np.dtype(np.int32)])

    def short(self):
        return self.to(_FROM_NP[np.dtype(np.int16)])

    def char(self):
        return self.to(_FROM_NP[np.dtype(np.int8)])

    def byte(self):
        return self.to(_FROM_NP[np.dtype(np.uint8)])

    def bool(self):
        return self.to(_FROM_NP[np.dtype(np.bool_)])

    def pin_memory(self):
        return self

    def is_pinned(self):
        return False

    def share_memory_(self):
        """Moves the data into shared memory (in place) so that processes started afterwards
        (``disttorch.multiprocessing``) see each other's writes; a GPU tensor is left as it is."""
        from .multiprocessing._shared_storage import move_to_shared_memory
        move_to_shared_memory(self)
        return self

    def is_shared(self):
        from .multiprocessing._shared_storage import is_in_shared_memory
        return is_in_shared_memory(self._data)


_new = object.__new__


def _init_fields(t, arr):
    t._data = arr
    t._requires_grad = False
    t.grad = None
    t.grad_fn = None
    t._vc = [0]


def _rebuild_tensor(array, requires_grad, cls=Tensor, device=None):
    if device is not None:
        array = _backend.to_cuda(array, as_device(device).index)
    elif not array.flags.writeable:
        array = np.array(array, copy=True)
    t = Tensor._wrap(array)
    if cls is not Tensor:
        t.__class__ = cls
    t._requires_grad = requires_grad
    return t


def _wrap_dim(dim, ndim):
    d = int(dim)
    n = max(ndim, 1)
    if not -n <= d < n:
        raise IndexError(f"Dimension out of range (expected to be in range of [{-n}, {n - 1}], but got {dim})")
    return d + n if d < 0 else d


class _TensorHookRunner:
    """Node pre-hook applying a tensor's ``register_hook`` hooks, in registration order."""

    def __init__(self, hooks):
        self.hooks = hooks

    def __call__(self, grad):
        for hook in list(self.hooks):
            wrapped = grad if isinstance(grad, Tensor) else Tensor._wrap(grad)
            res = hook(wrapped)
            if res is not None:
                grad = res if isinstance(grad, Tensor) else res._data
        return grad


class _RetainGrad:
    """Node pre-hook storing a non-leaf's incoming gradient in its ``.grad``."""

    def __init__(self, tensor):
        import weakref
        self.ref = weakref.ref(tensor)

    def __call__(self, grad):
        t = self.ref()
        if t is not None:
            g = grad if isinstance(grad, Tensor) else Tensor._wrap(grad.copy())
            if t.grad is None:
                t.grad = g.detach() if isinstance(grad, Tensor) and not STATE.enabled else g
            else:
                t.grad = Tensor._wrap(t.grad._data + g._data)
        return grad
