"""launcher/settings.py declares every DISTTORCH_* variable once; the README's table is its output."""
import pathlib
import re
import subprocess
import sys

import pytest

from disttorch_launcher import settings

ROOT = pathlib.Path(__file__).resolve().parents[2]
_NAME = re.compile(r"\bDISTTORCH_[A-Z0-9_]*[A-Z0-9]\b")
_NOT_VARIABLES = {"DISTTORCH_BARRIER"}  # a Python constant in benchmarks/startup.py (a script's text)


def _used_names():
    used = {}
    files = [*ROOT.joinpath("disttorch").rglob("*.py"), *ROOT.joinpath("launcher").rglob("*.py"),
             *ROOT.joinpath("examples").rglob("*.py"), *ROOT.joinpath("benchmarks").rglob("*.py"),
             ROOT / "README.md", *ROOT.joinpath("launcher").rglob("*.md"), *ROOT.joinpath("docs").rglob("*.md")]
    for path in files:
        if path.exists():
            for name in _NAME.findall(path.read_text(errors="replace")):
                used.setdefault(name, path.relative_to(ROOT))
    return used


def test_every_variable_the_code_names_is_declared():
    used = _used_names()
    assert len(used) >= 30
    missing = {name: str(path) for name, path in used.items()
               if name not in settings.SETTINGS and name not in _NOT_VARIABLES}
    assert not missing, f"declare these in launcher/settings.py (type, default, meaning): {missing}"


def test_readme_settings_table_is_the_generated_one():
    readme = (ROOT / "README.md").read_text()
    section = readme.split("### Settings\n", 1)[1].split("\n## ", 1)[0]
    assert settings.markdown_table() in section, (
        "README's Settings table differs from launcher/settings.py: paste `python -m disttorch_launcher.settings`")
    assert readme.index("### Settings") < readme.index("## API coverage")


@pytest.mark.parametrize("name, text, value", [
    ("DISTTORCH_CHUNK_BYTES", "4e6", 4_000_000),
    ("DISTTORCH_CHUNK_BYTES", "  1048576 ", 1048576),
    ("DISTTORCH_NAN_CHECK", "Yes", True),
    ("DISTTORCH_NAN_CHECK", "off", False),
    ("DISTTORCH_TRANSPORT", "TCP", "tcp"),
    ("DISTTORCH_HEARTBEAT_TIMEOUT", "0.25", 0.25),
    ("DISTTORCH_IO_THREADS", "3", 3),
])
def test_values_are_parsed_by_type(name, text, value):
    assert settings.get(name, {name: text}) == value


def test_unset_or_empty_gives_the_declared_default():
    assert settings.get("DISTTORCH_CHUNK_BYTES", {}) == 4 * 1024 * 1024
    assert settings.get("DISTTORCH_TRANSPORT", {"DISTTORCH_TRANSPORT": " "}) == "auto"
    assert settings.get("DISTTORCH_SECRET", {}) is None
    assert settings.get("DISTTORCH_MALLOC_TUNING", {}) is True


@pytest.mark.parametrize("name, text, message", [
    ("DISTTORCH_CHUNK_BYTES", "lots", "DISTTORCH_CHUNK_BYTES='lots' is not a number"),
    ("DISTTORCH_CHUNK_BYTES", "-5", "DISTTORCH_CHUNK_BYTES='-5' must be positive"),
    ("DISTTORCH_NAN_CHECK", "maybe", "DISTTORCH_NAN_CHECK='maybe': expected 1 or 0"),
    ("DISTTORCH_TRANSPORT", "udp", "DISTTORCH_TRANSPORT='udp': expected auto, shm, ipc or tcp"),
    ("DISTTORCH_IO_THREADS", "0", "DISTTORCH_IO_THREADS='0' must be at least 1"),
])
def test_bad_values_name_the_variable_and_the_value(name, text, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        settings.get(name, {name: text})


def test_an_undeclared_name_is_refused():
    with pytest.raises(KeyError, match="DISTTORCH_NOPE is not declared in launcher/settings.py"):
        settings.get("DISTTORCH_NOPE")


def test_first_int_takes_the_first_whole_number_and_else_zero():
    env = {"A": "x", "B": " 7 ", "C": "9", "N": "-1"}
    assert settings.first_int("A", "B", "C", environ=env) == 7  # "x" is passed over
    assert settings.first_int("N", "MISSING", environ=env) == 0
    assert settings.first_int(environ=env) == 0


def test_the_module_imports_only_the_standard_library():
    code = "import sys, disttorch_launcher.settings; print(sorted(m for m in ('numpy', 'zmq', 'disttorch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "[]"
