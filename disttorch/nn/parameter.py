"""``Parameter`` (a Tensor that a Module registers as learnable) and ``Buffer`` (a Tensor marked as
module state), with PyTorch's semantics."""
from __future__ import annotations

from .._tensor_str import parameter_repr
from ..tensor import Tensor, _init_fields

__all__ = ["Parameter", "Buffer"]


class Parameter(Tensor):
    """A leaf Tensor that ``Module.__setattr__`` registers as a parameter.

    ``Parameter(t)`` shares ``t``'s array (no copy), as PyTorch's ``_make_subclass`` does, so the
    optimizer's in-place updates and the module see the same memory. ``requires_grad`` defaults to
    True; integer data cannot require grad.
    """

    def __new__(cls, data=None, requires_grad=True):
        if data is None:
            from ..ops.creation import empty
            data = empty(0)
        if not isinstance(data, Tensor):
            raise TypeError(f"Parameter(): expected a Tensor as data, but got {type(data).__name__}")
        if requires_grad and data._data.dtype.kind not in "fc":
            raise RuntimeError("Only Tensors of floating point and complex dtype can require gradients")
        t = object.__new__(cls)
        _init_fields(t, data._data)
        t._requires_grad = bool(requires_grad)
        return t

    def __init__(self, data=None, requires_grad=True):
        """All the work is in ``__new__``; Tensor.__init__ would allocate a fresh array."""

    def __repr__(self):
        return parameter_repr(self)

    __str__ = __repr__


class _BufferMeta(type):
    # ``Buffer(...)`` returns a plain Tensor flagged ``_is_buffer`` (as in PyTorch), so
    # ``isinstance(x, Buffer)`` looks at the flag instead of the class.
    def __instancecheck__(cls, instance):
        if cls is Buffer:
            return isinstance(instance, Tensor) and bool(getattr(instance, "_is_buffer", False))
        return super().__instancecheck__(instance)


class Buffer(Tensor, metaclass=_BufferMeta):
    """Marks a Tensor as module state: assigning ``module.x = Buffer(t)`` registers a buffer.

    ``persistent=False`` keeps it out of ``state_dict``. Returns a Tensor sharing ``data``'s array.
    """

    def __new__(cls, data=None, *, persistent=True):
        if data is None:
            from ..ops.creation import empty
            data = empty(0)
        t = data.detach()
        if data.requires_grad:
            t.requires_grad_(True)
        t.persistent = persistent
        t._is_buffer = True
        return t
