"""What torchvision's ``weights=`` argument accepts here, and loading it.

torchvision downloads named weights (``ResNet18_Weights.IMAGENET1K_V1``, ``"DEFAULT"``) from the
internet. disttorch never downloads: a named weight gets an error that says how to load a local
file instead, while a path to a checkpoint (``disttorch.save`` / ``torch.save`` format or
``.safetensors``) or an in-memory state_dict is loaded into the freshly built model.
"""
import os
from collections.abc import Mapping


class WeightsName:
    """One of torchvision's named pretrained weights (e.g. ``ResNet18_Weights.IMAGENET1K_V1``).

    It exists so programs that name weights import and build; passing it to a model raises,
    because the weights would have to be downloaded.
    """

    def __init__(self, enum_name, name):
        self.enum_name = enum_name
        self.name = name

    def __repr__(self):
        return f"{self.enum_name}.{self.name}"


class _WeightsEnumMeta(type):
    def __iter__(cls):
        return iter(cls._members)

    def __len__(cls):
        return len(cls._members)


def weights_enum(enum_name, names):
    """A class like torchvision's ``<Model>_Weights``: one attribute per name, plus ``DEFAULT``."""
    members = [WeightsName(enum_name, n) for n in names]
    attrs = {m.name: m for m in members}
    attrs["DEFAULT"] = members[-1]
    attrs["_members"] = members
    attrs["__doc__"] = (f"torchvision's {enum_name} names ({', '.join(names)}); these weights need a "
                        "download, which disttorch does not do: load a local file instead.")
    attrs["verify"] = classmethod(lambda cls, obj: obj)
    return _WeightsEnumMeta(enum_name, (), attrs)


def _no_download_error(what, arch):
    return RuntimeError(
        f"{arch}: the pretrained weights {what} cannot be downloaded (disttorch never downloads). "
        f"Save them where they are available (e.g. torch.save(model.state_dict(), 'w.pth') or "
        f"a .safetensors file) and pass the local file: {arch}(weights='w.pth'), or build with "
        f"weights=None and call model.load_state_dict(disttorch.load('w.pth'))")


_CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".tar", ".safetensors")


def _looks_like_file(text):
    """A string that names a file rather than a weights name such as "IMAGENET1K_V1"."""
    return os.sep in text or text.lower().endswith(_CHECKPOINT_SUFFIXES)


def _read_state_dict(path, arch):
    import disttorch

    if not os.path.isfile(path):
        if _looks_like_file(path):
            raise FileNotFoundError(f"{arch}: weights file {path!r} does not exist")
        raise _no_download_error(repr(path), arch)
    if path.endswith(".safetensors"):
        return disttorch.load_safetensors(path)
    obj = disttorch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping):
        raise TypeError(f"{arch}: {path!r} holds a {type(obj).__name__}, expected a state_dict")
    return obj


def resolve_weights(weights, arch, pretrained=None):
    """The state_dict that ``weights`` names, or None for a randomly initialised model.

    ``pretrained`` is torchvision's deprecated boolean; ``pretrained=True`` is a request for the
    downloadable ImageNet weights.
    """
    if pretrained:
        raise _no_download_error("(pretrained=True)", arch)
    if weights is None:
        return None
    if isinstance(weights, WeightsName):
        raise _no_download_error(repr(weights), arch)
    if isinstance(weights, Mapping):
        return weights
    if isinstance(weights, (str, os.PathLike)):
        return _read_state_dict(os.fspath(weights), arch)
    raise TypeError(f"{arch}: weights must be None, a local file path or a state_dict, "
                    f"got {type(weights).__name__}")


def build(make_model, weights, arch, pretrained=None, remap=None):
    """``make_model()`` with ``weights`` (see :func:`resolve_weights`) loaded into it.

    The weights are resolved first, so a request that cannot be met fails before seconds are
    spent initialising a large model.
    """
    state_dict = resolve_weights(weights, arch, pretrained)
    model = make_model()
    if state_dict is not None:
        if remap is not None:
            state_dict = remap(state_dict)
        model.load_state_dict(state_dict)
    return model
