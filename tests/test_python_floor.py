"""pyproject allows Python 3.10: no module may need a newer interpreter.

Two checks that would have caught ``import tomllib`` (3.11+) in ``launcher/simulate.py``:
every source file parses under 3.10's grammar, and no module uses a standard-library module or
name added after 3.10 unless the use is guarded (inside ``try: ... except ImportError`` /
``AttributeError``, or under ``if sys.version_info >= ...``). Then the TOML fallback itself is run
with ``tomllib`` hidden, as it is on 3.10.
"""
from __future__ import annotations

import ast
import pathlib
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
FLOOR = (3, 10)  # requires-python in pyproject.toml

# Standard-library modules and names added in 3.11-3.13 (from the "What's New" pages) that code
# written on a newer Python reaches for first.
NEW_MODULES = {"tomllib": "3.11", "wsgiref.types": "3.11"}
NEW_NAMES = {
    "datetime": {"UTC": "3.11"},
    "enum": {"StrEnum": "3.11", "verify": "3.11", "ReprEnum": "3.11", "EnumCheck": "3.11"},
    "typing": {"Self": "3.11", "LiteralString": "3.11", "Never": "3.11", "assert_never": "3.11",
               "reveal_type": "3.11", "Required": "3.11", "NotRequired": "3.11", "Unpack": "3.11",
               "TypeVarTuple": "3.11", "dataclass_transform": "3.11", "override": "3.12",
               "TypeAliasType": "3.12", "ReadOnly": "3.13", "TypeIs": "3.13"},
    "contextlib": {"chdir": "3.11"},
    "hashlib": {"file_digest": "3.11"},
    "operator": {"call": "3.11"},
    "math": {"cbrt": "3.11", "exp2": "3.11", "sumprod": "3.12", "fma": "3.13"},
    "asyncio": {"TaskGroup": "3.11", "timeout": "3.11", "Runner": "3.11", "Barrier": "3.11"},
    "itertools": {"batched": "3.12"},
    "warnings": {"deprecated": "3.13"},
    "copy": {"replace": "3.13"},
    "os": {"process_cpu_count": "3.13"},
    "sys": {"monitoring": "3.12", "_is_gil_enabled": "3.13"},
    "threading": {"setprofile_all_threads": "3.12", "settrace_all_threads": "3.12"},
}


def _sources():
    for top in ("disttorch", "launcher", "examples", "benchmarks"):
        yield from sorted((ROOT / top).rglob("*.py"))


def _guarded(node, parents):
    """True when ``node`` sits in a try that catches ImportError/AttributeError, or under a
    ``sys.version_info`` test."""
    while node in parents:
        parent = parents[node]
        if isinstance(parent, ast.Try) and node in parent.body:
            for handler in parent.handlers:
                names = ast.dump(handler.type) if handler.type is not None else "bare"
                if any(n in names for n in ("ImportError", "ModuleNotFoundError", "AttributeError", "Exception",
                                            "bare")):
                    return True
        if isinstance(parent, ast.If) and "version_info" in ast.dump(parent.test):
            return True
        node = parent
    return False


def _newer_uses(tree):
    """(line, what, version) for every unguarded use of a post-3.10 module or name."""
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    aliases = {}  # local name -> module, for `import x` / `import x as y`
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else a.name.split(".")[0]
                if a.name in NEW_MODULES and not _guarded(node, parents):
                    found.append((node.lineno, f"import {a.name}", NEW_MODULES[a.name]))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module in NEW_MODULES and not _guarded(node, parents):
                found.append((node.lineno, f"from {node.module} import ...", NEW_MODULES[node.module]))
            for a in node.names:
                full = f"{node.module}.{a.name}"
                version = NEW_NAMES.get(node.module, {}).get(a.name) or NEW_MODULES.get(full)
                if version and not _guarded(node, parents):
                    found.append((node.lineno, f"from {node.module} import {a.name}", version))
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            module = aliases.get(node.value.id)
            version = NEW_NAMES.get(module, {}).get(node.attr) if module else None
            if version and not _guarded(node, parents):
                found.append((node.lineno, f"{module}.{node.attr}", version))
    return found


def test_every_source_file_parses_with_the_310_grammar():
    bad = []
    for path in _sources():
        try:
            ast.parse(path.read_text(encoding="utf-8"), filename=str(path), feature_version=FLOOR)
        except SyntaxError as exc:
            bad.append(f"{path.relative_to(ROOT)}:{exc.lineno}: {exc.msg}")
    assert not bad, "syntax newer than Python 3.10:\n" + "\n".join(bad)


def test_no_unguarded_standard_library_use_newer_than_310():
    bad = []
    for path in _sources():
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        bad += [f"{path.relative_to(ROOT)}:{line}: {what} (Python {version})" for line, what, version in _newer_uses(tree)]
    assert not bad, "needs a Python newer than requires-python = '>=3.10':\n" + "\n".join(bad)


def test_the_checker_flags_an_unguarded_tomllib_import_and_accepts_a_guarded_one():
    assert _newer_uses(ast.parse("import tomllib\n")) == [(1, "import tomllib", "3.11")]
    assert _newer_uses(ast.parse("from itertools import batched\n")) == [(1, "from itertools import batched", "3.12")]
    assert _newer_uses(ast.parse("import datetime as d\nx = d.UTC\n")) == [(2, "datetime.UTC", "3.11")]
    assert _newer_uses(ast.parse("try:\n    import tomllib\nexcept ImportError:\n    import tomli as tomllib\n")) == []


def test_simulate_reads_toml_without_tomllib(tmp_path, monkeypatch):
    pytest.importorskip("tomli", reason="the 3.10 fallback parser (pip install tomli)")
    from disttorch_launcher import simulate
    monkeypatch.setitem(sys.modules, "tomllib", None)  # `import tomllib` now raises ImportError, as on 3.10
    path = tmp_path / "sim.toml"
    path.write_text('network = "latency=2ms,bandwidth=1gbit"\nseed = 7\n')
    assert simulate._read_file(str(path)) == {"network": "latency=2ms,bandwidth=1gbit", "seed": 7}
