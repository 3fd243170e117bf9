"""torchvision, as the reference for the vision tests, or None where it cannot be imported.

The torchvision wheel on PyPI for a CPU-only torch may be built against CUDA torch: its C
extension (detection ops) then fails to load and ``import torchvision`` raises. Models and
utils are pure Python, so this imports the ``torchvision`` package without running its
``__init__`` (which registers the C ops) and lets ``torchvision.models`` / ``.utils`` load.
"""
import importlib
import importlib.util
import sys
import types


def load_torchvision():
    """The torchvision module with ``models`` and ``utils`` importable, or None."""
    try:
        import torch  # noqa: F401
    except ImportError:
        return None
    try:
        import torchvision
        import torchvision.models
        import torchvision.utils
        return torchvision
    except ImportError:
        return None
    except Exception:  # noqa: BLE001 -- the C-extension mismatch raises RuntimeError
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return None
    package = types.ModuleType("torchvision")
    package.__path__ = list(spec.submodule_search_locations)
    package.__spec__ = spec
    package.__file__ = spec.origin
    sys.modules["torchvision"] = package
    try:
        package.models = importlib.import_module("torchvision.models")
        package.utils = importlib.import_module("torchvision.utils")
    except Exception:  # noqa: BLE001 -- any failure here means: no reference available
        del sys.modules["torchvision"]
        return None
    return package
