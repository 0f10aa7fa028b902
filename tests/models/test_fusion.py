import pytest
import torch

from brainxai.models import create_model
from brainxai.models.fusion import fold_batchnorm


@pytest.mark.parametrize("name", ["efficientnet-lite0", "resnet18", "cnn-lstm"])
def test_fold_batchnorm_keeps_outputs(name):
    torch.manual_seed(0)
    model = create_model(name, pretrained=False)
    # Non-trivial BatchNorm statistics, as after training.
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.2, 0.2)
    model.eval()
    size, ch = model.brainxai_config.preprocess.img_size, model.brainxai_config.preprocess.channels
    x = torch.randn(2, ch, size, size)
    fused = fold_batchnorm(model)
    with torch.no_grad():
        ref, out = model(x), fused(x)
    assert torch.allclose(ref, out, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fused.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original untouched
