"""vision.models against torchvision: same state_dict keys and shapes for every constructor,
the same outputs and gradients from the same weights, and the ``weights=`` argument."""
import numpy as np
import pytest
from torchvision_reference import load_torchvision

import disttorch
from disttorch import nn
from disttorch.vision import models

tv = load_torchvision()
needs_torchvision = pytest.mark.skipif(tv is None, reason="torchvision (and torch) not installed")

# Parameter counts torchvision documents for its ImageNet models (1000 classes).
DOCUMENTED_PARAMS = {
    "alexnet": 61_100_840, "resnet18": 11_689_512, "resnet50": 25_557_032,
    "mobilenet_v2": 3_504_872, "mobilenet_v3_small": 2_542_856, "mobilenet_v3_large": 5_483_032,
    "squeezenet1_0": 1_248_424, "squeezenet1_1": 1_235_496, "densenet121": 7_978_856,
}
# VGGs differ only in their conv trunks, whose configurations and make_layers test_vgg_trunks_match
# checks, with the shared classifier (a full VGG has 100M+ parameters that take seconds to initialise). The
# 101-layer ResNeXt and Wide ResNet repeat resnext50's and wide_resnet50's blocks at resnet101's
# depths, both checked; they are left out for time (4-5 s each on a loaded 2-core machine).
SLOW = ("resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2")
KEY_CHECKED = [n for n in models.list_models() if not n.startswith("vgg") and n not in SLOW]
FORWARD_CHECKED = ["resnet18", "resnet50", "alexnet", "mobilenet_v2", "mobilenet_v3_small",
                   "squeezenet1_1", "densenet121"]


def shapes(module):
    return [(k, tuple(v.shape)) for k, v in module.state_dict().items()]


def reference_on_meta(name, **kwargs):
    """torchvision's model without memory or initialisation cost: only names and shapes."""
    import torch

    with torch.device("meta"):
        return getattr(tv.models, name)(**kwargs)


@pytest.mark.parametrize("name", sorted(DOCUMENTED_PARAMS))
def test_parameter_count_is_torchvisions_documented_one(name):
    model = models.get_model(name, weights=None)
    assert sum(p.numel() for p in model.parameters()) == DOCUMENTED_PARAMS[name]


@needs_torchvision
@pytest.mark.parametrize("name", KEY_CHECKED)
def test_state_dict_keys_and_shapes_match_torchvision(name):
    assert shapes(getattr(models, name)(num_classes=10)) == shapes(reference_on_meta(name, num_classes=10))


@needs_torchvision
def test_vgg_trunks_match():
    import torch

    assert models.vgg.CONFIGS == tv.models.vgg.cfgs
    # Two trunks cover make_layers' paths (each of the 8 takes a second or more to build).
    for config, batch_norm in (("A", True), ("E", False)):
        mine = models.vgg.make_layers(models.vgg.CONFIGS[config], batch_norm)
        with torch.device("meta"):
            ref = tv.models.vgg.make_layers(tv.models.vgg.cfgs[config], batch_norm)
        assert shapes(mine) == shapes(ref), (config, batch_norm)
        assert repr(mine) == repr(ref)
    # The layers after the trunk, on a VGG whose trunk is one conv (cheap to build).
    trunk = models.vgg.make_layers([512, "M"])
    with torch.device("meta"):
        ref = tv.models.VGG(tv.models.vgg.make_layers([512, "M"]), num_classes=10)
    assert shapes(models.VGG(trunk, num_classes=10, init_weights=False)) == shapes(ref)


def randomise_norm_statistics(reference):
    """Non-trivial batch-norm affine parameters and running statistics, so eval-mode outputs
    exercise them (fresh ones are 1 and 0, and leave MobileNet's outputs near zero)."""
    import torch

    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in reference.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.weight.shape, generator=g) + 0.5)
                m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.2)
                m.running_mean.copy_(torch.randn(m.running_mean.shape, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.running_var.shape, generator=g) + 0.5)


def to_disttorch(state_dict):
    return {k: disttorch.tensor(v.numpy()) for k, v in state_dict.items()}


@needs_torchvision
@pytest.mark.parametrize("name", FORWARD_CHECKED)
def test_eval_forward_matches_torchvision_with_its_weights(name, tmp_path):
    import torch

    torch.manual_seed(0)
    reference = getattr(tv.models, name)(num_classes=10).eval()
    randomise_norm_statistics(reference)
    # The weights travel four ways: a safetensors file, PyTorch's own checkpoint format
    # (torch.save), a disttorch checkpoint, an in-memory state_dict.
    if name in ("resnet18", "mobilenet_v3_small"):
        from safetensors.torch import save_file

        path = tmp_path / "weights.safetensors"
        save_file({k: v.contiguous() for k, v in reference.state_dict().items()}, str(path))
        weights = str(path)
    elif name in ("squeezenet1_1", "resnet50"):
        path = tmp_path / "weights.pth"
        torch.save(reference.state_dict(), path)
        weights = str(path)
    elif name == "densenet121":
        path = tmp_path / "weights.pt"
        disttorch.save(to_disttorch(reference.state_dict()), path)
        weights = path
    else:
        weights = to_disttorch(reference.state_dict())
    mine = getattr(models, name)(weights=weights, num_classes=10).eval()
    x = np.random.RandomState(1).rand(1, 3, 64, 64).astype(np.float32)
    with torch.no_grad():
        expected = reference(torch.from_numpy(x)).numpy()
    with disttorch.no_grad():
        got = mine(disttorch.tensor(x)).numpy()
    assert got.shape == (1, 10)
    assert np.abs(expected).max() > 1e-3  # a comparison of near-zero outputs would prove little
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max())


@needs_torchvision
def test_train_step_gradients_match_torchvision():
    import torch

    torch.manual_seed(0)
    reference = tv.models.resnet18(num_classes=5).train()
    mine = models.resnet18(weights=to_disttorch(reference.state_dict()), num_classes=5).train()
    rng = np.random.RandomState(2)
    # Batch norm over few values amplifies rounding differences: 4 images of 64x64 leave
    # layer4 16 values per channel, enough to compare at float32 tolerance.
    x = rng.rand(4, 3, 64, 64).astype(np.float32)
    y = np.array([1, 4, 0, 2])
    ref_loss = torch.nn.functional.cross_entropy(reference(torch.from_numpy(x)),
                                                 torch.from_numpy(y))
    ref_loss.backward()
    loss = nn.functional.cross_entropy(mine(disttorch.tensor(x)), disttorch.tensor(y))
    loss.backward()
    assert float(loss) == pytest.approx(float(ref_loss.detach()), rel=1e-5)
    ref_params = dict(reference.named_parameters())
    for key in ("conv1.weight", "layer2.0.downsample.0.weight", "layer4.1.bn2.weight", "fc.weight"):
        expected = ref_params[key].grad.numpy()
        got = dict(mine.named_parameters())[key].grad.numpy()
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())
    # Training mode updated the running statistics as torchvision's did.
    np.testing.assert_allclose(mine.bn1.running_mean.numpy(), reference.bn1.running_mean.numpy(),
                               rtol=1e-4, atol=1e-6)


def test_forward_backward_and_num_classes_without_reference():
    model = models.mobilenet_v3_small(num_classes=3)
    out = model(disttorch.rand(2, 3, 32, 32))
    assert out.shape == (2, 3)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    assert models.squeezenet1_1(num_classes=7).eval()(disttorch.rand(1, 3, 64, 64)).shape == (1, 7)


def test_named_weights_need_a_download_and_say_how_to_load_a_file():
    for weights in ("IMAGENET1K_V1", "DEFAULT", models.ResNet18_Weights.IMAGENET1K_V1,
                    models.ResNet18_Weights.DEFAULT):
        with pytest.raises(RuntimeError, match=r"resnet18: the pretrained weights .* cannot be "
                                               r"downloaded .* resnet18\(weights='w.pth'\)"):
            models.resnet18(weights=weights)
    with pytest.raises(RuntimeError, match="pretrained=True"):
        models.densenet121(pretrained=True)
    assert list(models.ResNet50_Weights) == [models.ResNet50_Weights.IMAGENET1K_V1,
                                             models.ResNet50_Weights.IMAGENET1K_V2]
    assert models.ResNet50_Weights.DEFAULT is models.ResNet50_Weights.IMAGENET1K_V2


def test_weights_file_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="squeezenet1_1: weights file '.*missing.pth' "
                                                "does not exist"):
        models.squeezenet1_1(weights=str(tmp_path / "missing.pth"))
    with pytest.raises(TypeError, match="weights must be None, a local file path or a "
                                        "state_dict, got int"):
        models.alexnet(weights=3)
    path = tmp_path / "ten_classes.pt"
    disttorch.save(models.squeezenet1_1(num_classes=10).state_dict(), path)
    with pytest.raises(RuntimeError, match="size mismatch for classifier.1.weight"):
        models.squeezenet1_1(weights=path)  # 1000 classes by default
    loaded = models.squeezenet1_1(weights=path, num_classes=10)
    saved = disttorch.load(path)
    assert np.array_equal(loaded.classifier[1].weight.detach().numpy(),
                          saved["classifier.1.weight"].numpy())


def test_densenet_loads_pre_0_4_key_names():
    model = models.densenet121(num_classes=4)
    old = {k.replace("norm1.", "norm.1.").replace("conv2.", "conv.2."): v
           for k, v in model.state_dict().items()}
    assert "features.denseblock1.denselayer1.norm.1.weight" in old
    reloaded = models.densenet121(weights=old, num_classes=4)
    for (k, a), b in zip(model.state_dict().items(), reloaded.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy()), k


def test_registry():
    assert {"resnet18", "vgg16_bn", "mobilenet_v3_large", "densenet201"} <= set(models.list_models())
    assert models.list_models(include="resnet*", exclude="*101*") == [
        "resnet152", "resnet18", "resnet34", "resnet50"]
    assert isinstance(models.get_model("ResNet18", num_classes=2), models.ResNet)
    with pytest.raises(ValueError, match="Unknown model nosuchnet"):
        models.get_model("nosuchnet")


def test_architecture_argument_errors():
    with pytest.raises(ValueError, match="Unsupported SqueezeNet version 2_0"):
        models.SqueezeNet("2_0")
    with pytest.raises(ValueError, match="replace_stride_with_dilation should be None or a "
                                         "3-element tuple"):
        models.resnet50(replace_stride_with_dilation=[True])
