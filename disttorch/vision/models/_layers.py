"""Building blocks shared by several torchvision architectures (torchvision.ops.misc's role)."""
from ... import nn


def make_divisible(value, divisor, min_value=None):
    """Rounds a channel count to a multiple of ``divisor``, never more than 10% below ``value``.

    MobileNet's width multiplier uses this rule; the counts must equal torchvision's so that
    state_dicts interchange.
    """
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


# torch.nn's own activations, so reprs, isinstance checks and state_dicts match torchvision's.
Hardswish = nn.Hardswish
Hardsigmoid = nn.Hardsigmoid


class Conv2dNormActivation(nn.Sequential):
    """Conv2d, then a norm layer, then an activation: torchvision's children ``0``, ``1``, ``2``.

    The conv has a bias only when there is no norm layer (the norm's shift would cancel it).
    """

    def __init__(self, in_channels, out_channels, kernel_size=3, stride=1, padding=None, groups=1,
                 norm_layer=nn.BatchNorm2d, activation_layer=nn.ReLU, dilation=1, inplace=True,
                 bias=None):
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers = [nn.Conv2d(in_channels, out_channels, kernel_size, stride, padding,
                            dilation=dilation, groups=groups, bias=bias)]
        if norm_layer is not None:
            layers.append(norm_layer(out_channels))
        if activation_layer is not None:
            layers.append(activation_layer(inplace=inplace) if inplace is not None
                          else activation_layer())
        super().__init__(*layers)
        self.out_channels = out_channels


class SqueezeExcitation(nn.Module):
    """Channel attention: scales each channel by a gate computed from its global average."""

    def __init__(self, input_channels, squeeze_channels, activation=nn.ReLU,
                 scale_activation=nn.Sigmoid):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = activation()
        self.scale_activation = scale_activation()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


def init_conv_bn_linear(model, conv_mode="fan_out", linear_std=0.01):
    """The initialisation torchvision gives VGG and MobileNet: He-normal convs, unit norms,
    small-normal linears, zero biases."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=conv_mode, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, linear_std)
            nn.init.zeros_(m.bias)
