"""VGG 11/13/16/19, with and without batch norm, with torchvision's module names
(Simonyan and Zisserman, 2014)."""
from ... import flatten, nn
from ._layers import init_conv_bn_linear
from ._weights import build, weights_enum

__all__ = ["VGG", "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19",
           "vgg19_bn"]

# Output channels of each 3x3 conv, "M" for a 2x2 max pool; the letters are the paper's columns.
CONFIGS = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}


def make_layers(config, batch_norm=False):
    """The convolutional trunk ``features`` for one of :data:`CONFIGS`."""
    layers = []
    in_channels = 3
    for v in config:
        if v == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
            continue
        layers.append(nn.Conv2d(in_channels, v, kernel_size=3, padding=1))
        if batch_norm:
            layers.append(nn.BatchNorm2d(v))
        layers.append(nn.ReLU(inplace=True))
        in_channels = v
    return nn.Sequential(*layers)


class VGG(nn.Module):
    """torchvision.models.VGG: ``features``, a 7x7 adaptive average pool, and a 3-layer MLP
    classifier. Input (N, 3, H, W), output (N, num_classes)."""

    def __init__(self, features, num_classes=1000, init_weights=True, dropout=0.5):
        super().__init__()
        self.features = features
        self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
        self.classifier = nn.Sequential(
            nn.Linear(512 * 7 * 7, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, 4096), nn.ReLU(True), nn.Dropout(p=dropout),
            nn.Linear(4096, num_classes))
        if init_weights:
            init_conv_bn_linear(self)

    def forward(self, x):
        return self.classifier(flatten(self.avgpool(self.features(x)), 1))


def _vgg(arch, config, batch_norm, weights, kwargs):
    pretrained = kwargs.pop("pretrained", None)
    if weights is not None or pretrained:
        kwargs["init_weights"] = False  # the loaded weights overwrite it anyway
    return build(lambda: VGG(make_layers(CONFIGS[config], batch_norm=batch_norm), **kwargs),
                 weights, arch, pretrained)


VGG11_Weights = weights_enum("VGG11_Weights", ["IMAGENET1K_V1"])
VGG11_BN_Weights = weights_enum("VGG11_BN_Weights", ["IMAGENET1K_V1"])
VGG13_Weights = weights_enum("VGG13_Weights", ["IMAGENET1K_V1"])
VGG13_BN_Weights = weights_enum("VGG13_BN_Weights", ["IMAGENET1K_V1"])
VGG16_Weights = weights_enum("VGG16_Weights", ["IMAGENET1K_V1", "IMAGENET1K_FEATURES"])
VGG16_BN_Weights = weights_enum("VGG16_BN_Weights", ["IMAGENET1K_V1"])
VGG19_Weights = weights_enum("VGG19_Weights", ["IMAGENET1K_V1"])
VGG19_BN_Weights = weights_enum("VGG19_BN_Weights", ["IMAGENET1K_V1"])


def vgg11(*, weights=None, progress=True, **kwargs):
    """VGG-11 (configuration "A")."""
    return _vgg("vgg11", "A", False, weights, kwargs)


def vgg11_bn(*, weights=None, progress=True, **kwargs):
    """VGG-11 with batch norm."""
    return _vgg("vgg11_bn", "A", True, weights, kwargs)


def vgg13(*, weights=None, progress=True, **kwargs):
    """VGG-13 (configuration "B")."""
    return _vgg("vgg13", "B", False, weights, kwargs)


def vgg13_bn(*, weights=None, progress=True, **kwargs):
    """VGG-13 with batch norm."""
    return _vgg("vgg13_bn", "B", True, weights, kwargs)


def vgg16(*, weights=None, progress=True, **kwargs):
    """VGG-16 (configuration "D")."""
    return _vgg("vgg16", "D", False, weights, kwargs)


def vgg16_bn(*, weights=None, progress=True, **kwargs):
    """VGG-16 with batch norm."""
    return _vgg("vgg16_bn", "D", True, weights, kwargs)


def vgg19(*, weights=None, progress=True, **kwargs):
    """VGG-19 (configuration "E")."""
    return _vgg("vgg19", "E", False, weights, kwargs)


def vgg19_bn(*, weights=None, progress=True, **kwargs):
    """VGG-19 with batch norm."""
    return _vgg("vgg19_bn", "E", True, weights, kwargs)
