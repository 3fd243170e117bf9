"""The torch-level function namespace (``disttorch.add``, ``disttorch.cat``, ...), built from the op
table in ``disttorch/ops/registry.py``: ``disttorch/__init__.py`` star-imports it and the library
calls ops through it (``from . import _torch_api as T``; ``T.add(a, b)``)."""
from .ops.registry import OPS, resolve


def _build() -> dict:
    namespace = {}
    for decl in OPS:
        if decl.function:
            fn = resolve(decl)
            for name in (decl.name, *decl.aliases):
                namespace[name] = fn
    return namespace


_NAMESPACE = _build()
globals().update(_NAMESPACE)
__all__ = sorted(_NAMESPACE)
