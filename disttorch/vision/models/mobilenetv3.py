"""MobileNetV3 Large and Small with torchvision's module names (Howard et al., 2019)."""
from functools import partial

from ... import flatten, nn
from ._layers import (
    Conv2dNormActivation,
    Hardsigmoid,
    Hardswish,
    SqueezeExcitation,
    init_conv_bn_linear,
    make_divisible,
)
from ._weights import build, weights_enum

__all__ = [
    "InvertedResidual",
    "InvertedResidualConfig",
    "MobileNetV3",
    "MobileNet_V3_Large_Weights",
    "MobileNet_V3_Small_Weights",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
]


class InvertedResidualConfig:
    """One bneck row of the paper's tables 1 and 2, channels scaled by ``width_mult``."""

    def __init__(self, input_channels, kernel, expanded_channels, out_channels, use_se,
                 activation, stride, dilation, width_mult):
        self.input_channels = self.adjust_channels(input_channels, width_mult)
        self.kernel = kernel
        self.expanded_channels = self.adjust_channels(expanded_channels, width_mult)
        self.out_channels = self.adjust_channels(out_channels, width_mult)
        self.use_se = use_se
        self.use_hs = activation == "HS"
        self.stride = stride
        self.dilation = dilation

    @staticmethod
    def adjust_channels(channels, width_mult):
        return make_divisible(channels * width_mult, 8)


class InvertedResidual(nn.Module):
    """Expand, depthwise, optional squeeze-and-excitation, project; children ``block.i``."""

    def __init__(self, cnf, norm_layer, se_layer=None):
        super().__init__()
        se_layer = se_layer or partial(SqueezeExcitation, scale_activation=Hardsigmoid)
        if not 1 <= cnf.stride <= 2:
            raise ValueError("illegal stride value")
        self.use_res_connect = cnf.stride == 1 and cnf.input_channels == cnf.out_channels
        activation = Hardswish if cnf.use_hs else nn.ReLU
        layers = []
        if cnf.expanded_channels != cnf.input_channels:
            layers.append(Conv2dNormActivation(cnf.input_channels, cnf.expanded_channels,
                                               kernel_size=1, norm_layer=norm_layer,
                                               activation_layer=activation))
        stride = 1 if cnf.dilation > 1 else cnf.stride
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.expanded_channels,
                                           kernel_size=cnf.kernel, stride=stride,
                                           dilation=cnf.dilation, groups=cnf.expanded_channels,
                                           norm_layer=norm_layer, activation_layer=activation))
        if cnf.use_se:
            squeeze_channels = make_divisible(cnf.expanded_channels // 4, 8)
            layers.append(se_layer(cnf.expanded_channels, squeeze_channels))
        layers.append(Conv2dNormActivation(cnf.expanded_channels, cnf.out_channels, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=None))
        self.block = nn.Sequential(*layers)
        self.out_channels = cnf.out_channels
        self._is_cn = cnf.stride > 1

    def forward(self, x):
        out = self.block(x)
        return out + x if self.use_res_connect else out


class MobileNetV3(nn.Module):
    """torchvision.models.MobileNetV3. Input (N, 3, H, W), output (N, num_classes)."""

    def __init__(self, inverted_residual_setting, last_channel, num_classes=1000, block=None,
                 norm_layer=None, dropout=0.2, **kwargs):
        super().__init__()
        if not inverted_residual_setting:
            raise ValueError("The inverted_residual_setting should not be empty")
        if not all(isinstance(s, InvertedResidualConfig) for s in inverted_residual_setting):
            raise TypeError("The inverted_residual_setting should be List[InvertedResidualConfig]")
        block = block or InvertedResidual
        # The paper's batch norm settings: TensorFlow's momentum 0.99 is PyTorch's 0.01.
        norm_layer = norm_layer or partial(nn.BatchNorm2d, eps=0.001, momentum=0.01)
        first = inverted_residual_setting[0].input_channels
        layers = [Conv2dNormActivation(3, first, kernel_size=3, stride=2, norm_layer=norm_layer,
                                       activation_layer=Hardswish)]
        layers += [block(cnf, norm_layer) for cnf in inverted_residual_setting]
        lastconv_in = inverted_residual_setting[-1].out_channels
        lastconv_out = 6 * lastconv_in
        layers.append(Conv2dNormActivation(lastconv_in, lastconv_out, kernel_size=1,
                                           norm_layer=norm_layer, activation_layer=Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(
            nn.Linear(lastconv_out, last_channel), Hardswish(inplace=True),
            nn.Dropout(p=dropout, inplace=True), nn.Linear(last_channel, num_classes))
        init_conv_bn_linear(self)

    def forward(self, x):
        return self.classifier(flatten(self.avgpool(self.features(x)), 1))


def mobilenet_v3_config(arch, width_mult=1.0, reduced_tail=False, dilated=False):
    """The bneck rows and last channel count of ``mobilenet_v3_large`` or ``_small``."""
    reduce = 2 if reduced_tail else 1
    dil = 2 if dilated else 1
    row = partial(InvertedResidualConfig, width_mult=width_mult)
    if arch == "mobilenet_v3_large":
        setting = [
            row(16, 3, 16, 16, False, "RE", 1, 1),
            row(16, 3, 64, 24, False, "RE", 2, 1),
            row(24, 3, 72, 24, False, "RE", 1, 1),
            row(24, 5, 72, 40, True, "RE", 2, 1),
            row(40, 5, 120, 40, True, "RE", 1, 1),
            row(40, 5, 120, 40, True, "RE", 1, 1),
            row(40, 3, 240, 80, False, "HS", 2, 1),
            row(80, 3, 200, 80, False, "HS", 1, 1),
            row(80, 3, 184, 80, False, "HS", 1, 1),
            row(80, 3, 184, 80, False, "HS", 1, 1),
            row(80, 3, 480, 112, True, "HS", 1, 1),
            row(112, 3, 672, 112, True, "HS", 1, 1),
            row(112, 5, 672, 160 // reduce, True, "HS", 2, dil),
            row(160 // reduce, 5, 960 // reduce, 160 // reduce, True, "HS", 1, dil),
            row(160 // reduce, 5, 960 // reduce, 160 // reduce, True, "HS", 1, dil),
        ]
        last_channel = InvertedResidualConfig.adjust_channels(1280 // reduce, width_mult)
    elif arch == "mobilenet_v3_small":
        setting = [
            row(16, 3, 16, 16, True, "RE", 2, 1),
            row(16, 3, 72, 24, False, "RE", 2, 1),
            row(24, 3, 88, 24, False, "RE", 1, 1),
            row(24, 5, 96, 40, True, "HS", 2, 1),
            row(40, 5, 240, 40, True, "HS", 1, 1),
            row(40, 5, 240, 40, True, "HS", 1, 1),
            row(40, 5, 120, 48, True, "HS", 1, 1),
            row(48, 5, 144, 48, True, "HS", 1, 1),
            row(48, 5, 288, 96 // reduce, True, "HS", 2, dil),
            row(96 // reduce, 5, 576 // reduce, 96 // reduce, True, "HS", 1, dil),
            row(96 // reduce, 5, 576 // reduce, 96 // reduce, True, "HS", 1, dil),
        ]
        last_channel = InvertedResidualConfig.adjust_channels(1024 // reduce, width_mult)
    else:
        raise ValueError(f"Unsupported model type {arch}")
    return setting, last_channel


def _mobilenet_v3(arch, weights, kwargs):
    pretrained = kwargs.pop("pretrained", None)
    config_args = {k: kwargs.pop(k) for k in ("width_mult", "reduced_tail", "dilated")
                   if k in kwargs}
    setting, last_channel = mobilenet_v3_config(arch, **config_args)
    return build(lambda: MobileNetV3(setting, last_channel, **kwargs), weights, arch, pretrained)


MobileNet_V3_Large_Weights = weights_enum("MobileNet_V3_Large_Weights",
                                          ["IMAGENET1K_V1", "IMAGENET1K_V2"])
MobileNet_V3_Small_Weights = weights_enum("MobileNet_V3_Small_Weights", ["IMAGENET1K_V1"])


def mobilenet_v3_large(*, weights=None, progress=True, **kwargs):
    """MobileNetV3-Large. ``weights``: None, a local checkpoint path or a state_dict."""
    return _mobilenet_v3("mobilenet_v3_large", weights, kwargs)


def mobilenet_v3_small(*, weights=None, progress=True, **kwargs):
    """MobileNetV3-Small. ``weights``: None, a local checkpoint path or a state_dict."""
    return _mobilenet_v3("mobilenet_v3_small", weights, kwargs)
