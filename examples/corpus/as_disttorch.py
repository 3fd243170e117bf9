"""Runs a program written for PyTorch with disttorch standing in for it, unchanged.

    python examples/corpus/as_disttorch.py PROGRAM.py [ARGS...]

Every ``import torch`` / ``import torch.nn as nn`` / ``from torch.utils.data import ...`` in the
program (and in modules it imports) gets disttorch's module of the same name, and ``torchvision``
gets ``disttorch.vision``. The program then runs as ``__main__`` with ``sys.argv`` = [PROGRAM, ARGS].
A name that disttorch lacks fails at import with ``ModuleNotFoundError`` naming the torch module.

The same thing by hand, in a program of your own: ``import disttorch as torch`` and
``import disttorch.vision as torchvision``.
"""
import importlib
import importlib.abc
import importlib.util
import os
import runpy
import sys

# The names a program imports, and the disttorch packages that play them.
ALIASES = {"torch": "disttorch", "torchvision": "disttorch.vision"}


class _AliasLoader(importlib.abc.Loader):
    """Hands out the already imported disttorch module instead of loading a second copy."""

    def __init__(self, target):
        self.target = target

    def create_module(self, spec):
        return importlib.import_module(self.target)

    def exec_module(self, module):
        pass  # importing the target already ran it


class _AliasFinder(importlib.abc.MetaPathFinder):
    """Maps ``torch.x.y`` to ``disttorch.x.y`` (and ``torchvision.x`` to ``disttorch.vision.x``)."""

    def find_spec(self, fullname, path=None, target=None):
        head, _, rest = fullname.partition(".")
        if head not in ALIASES:
            return None
        real = ALIASES[head] + ("." + rest if rest else "")
        try:
            if importlib.util.find_spec(real) is None:
                return None
        except ModuleNotFoundError:
            return None
        return importlib.util.spec_from_loader(fullname, _AliasLoader(real))


def install():
    """From now on, ``import torch`` and ``import torchvision`` in this process mean disttorch."""
    if any(name == "torch" or name.startswith("torch.") for name in sys.modules):
        raise RuntimeError("PyTorch is already imported in this process; install() must run first")
    sys.meta_path.insert(0, _AliasFinder())


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv:
        sys.exit(__doc__)
    install()
    sys.argv = list(argv)
    # As `python PROGRAM.py` does: the program's folder comes first on the import path.
    sys.path.insert(0, os.path.dirname(os.path.abspath(argv[0])))
    runpy.run_path(argv[0], run_name="__main__")


if __name__ == "__main__":
    main()
