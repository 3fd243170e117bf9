"""Imports point one way (docs/architecture.md, "Layers"): the core (tensor, autograd, ops and the
private modules beside them) never imports nn, optim, utils or distributed; distributed never
imports nn; the launcher never imports the tensor stack. Every import statement counts, also
the ones inside functions, so a lazy import cannot hide a wrong edge."""
import ast
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]


def _module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: pathlib.Path, source: str | None = None) -> set:
    """Absolute names of every module ``path`` imports (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module
            found.add(prefix)
            found.update(f"{prefix}.{alias.name}" for alias in node.names)  # ``from pkg import submodule``
    return found


def _files(*globs):
    out = []
    for pattern in globs:
        out.extend(sorted(ROOT.glob(pattern)))
    assert out, globs
    return out


# disttorch/__init__.py is the namespace of everything, not part of the core
CORE = [p for p in _files("disttorch/tensor.py", "disttorch/_*.py", "disttorch/autograd/*.py", "disttorch/ops/*.py")
        if p != ROOT / "disttorch" / "__init__.py"]
DISTRIBUTED = _files("disttorch/distributed/**/*.py")
LAUNCHER = _files("launcher/**/*.py")

RULES = [
    (CORE, ("disttorch.nn", "disttorch.optim", "disttorch.utils", "disttorch.distributed", "disttorch.vision",
            "disttorch.training"), "the core (tensor, autograd, ops) builds on nothing above it"),
    (DISTRIBUTED, ("disttorch.nn", "disttorch.optim"), "distributed sees only arrays and tensors"),
    (LAUNCHER, ("numpy", "disttorch", "cupy"), "the launcher imports nothing of the tensor stack"),
]


def _offending(files, forbidden, source=None):
    bad = []
    for path in files:
        for name in imports_of(path, source):
            if any(name == f or name.startswith(f + ".") for f in forbidden):
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    return bad


@pytest.mark.parametrize("files, forbidden, why", RULES, ids=["core", "distributed", "launcher"])
def test_no_import_breaks_the_layering(files, forbidden, why):
    assert not _offending(files, forbidden), why


def test_the_check_sees_relative_and_lazy_imports():
    # the forms a wrong edge would take: relative, from-package, inside a function
    probe = ROOT / "disttorch" / "ops" / "_probe.py"  # parsed from the text below, never written
    text = "def f():\n    from ..nn import functional\n    from .. import distributed\n    import numpy\n"
    assert {"disttorch.nn", "disttorch.nn.functional", "disttorch.distributed", "numpy"} <= imports_of(probe, text)
    assert len(_offending([probe], RULES[0][1], text)) == 3


def test_importing_the_launcher_loads_no_tensor_stack():
    code = ("import sys, disttorch_launcher.cli, disttorch_launcher.local, disttorch_launcher.settings, disttorch_launcher.net; "
            "print(sorted(m for m in ('numpy', 'disttorch', 'cupy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
