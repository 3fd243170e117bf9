"""torchvision.models' role: classification architectures with torchvision's constructor names,
arguments and state_dict keys, so checkpoints interchange with torchvision.

``weights=None`` builds a randomly initialised model; ``weights=`` a local checkpoint path or a
state_dict loads it. Named pretrained weights (``"IMAGENET1K_V1"``, ``ResNet18_Weights.DEFAULT``)
would need a download and raise an error that says how to load a local file instead.
"""
from . import alexnet as _alexnet_mod
from . import densenet as _densenet_mod
from . import mobilenetv2 as _mobilenetv2_mod
from . import mobilenetv3 as _mobilenetv3_mod
from . import resnet as _resnet_mod
from . import squeezenet as _squeezenet_mod
from . import vgg as _vgg_mod
from .alexnet import *  # noqa: F403
from .densenet import *  # noqa: F403
from .mobilenetv2 import *  # noqa: F403
from .mobilenetv3 import *  # noqa: F403
from .resnet import *  # noqa: F403
from .resnet import (  # noqa: F401
    ResNet18_Weights,
    ResNet34_Weights,
    ResNet50_Weights,
    ResNet101_Weights,
    ResNet152_Weights,
    ResNeXt50_32X4D_Weights,
    ResNeXt101_32X8D_Weights,
    ResNeXt101_64X4D_Weights,
    Wide_ResNet50_2_Weights,
    Wide_ResNet101_2_Weights,
)
from .squeezenet import *  # noqa: F403
from .vgg import *  # noqa: F403
from .vgg import (  # noqa: F401
    VGG11_BN_Weights,
    VGG11_Weights,
    VGG13_BN_Weights,
    VGG13_Weights,
    VGG16_BN_Weights,
    VGG16_Weights,
    VGG19_BN_Weights,
    VGG19_Weights,
)

_MODULES = (_alexnet_mod, _densenet_mod, _mobilenetv2_mod, _mobilenetv3_mod, _resnet_mod,
            _squeezenet_mod, _vgg_mod)
# Constructor name -> function: every lower-case public callable of the architecture modules.
_BUILDERS = {name: getattr(mod, name) for mod in _MODULES for name in mod.__all__
             if name[0].islower()}


def list_models(module=None, include=None, exclude=None):
    """Sorted names of the constructors here (torchvision.models.list_models)."""
    import fnmatch

    names = sorted(_BUILDERS)
    if include is not None:
        patterns = [include] if isinstance(include, str) else include
        names = [n for n in names if any(fnmatch.fnmatch(n, p) for p in patterns)]
    if exclude is not None:
        patterns = [exclude] if isinstance(exclude, str) else exclude
        names = [n for n in names if not any(fnmatch.fnmatch(n, p) for p in patterns)]
    return names


def get_model_builder(name):
    """The constructor function named ``name`` (e.g. "resnet18")."""
    name = name.lower()
    if name not in _BUILDERS:
        raise ValueError(f"Unknown model {name}")
    return _BUILDERS[name]


def get_model(name, **config):
    """Builds the model named ``name`` with keyword arguments ``config`` (e.g. weights=None)."""
    return get_model_builder(name)(**config)
