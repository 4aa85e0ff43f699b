"""One PyTorch model, three routes: analysed directly (perfcast's export), through an
ONNX file, and through a TFLite file give the same MACs and parameters."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from torchnets import mobilenet_v2, resnet18  # noqa: E402

from perfcast import api  # noqa: E402
from perfcast.frontends.tflite_writer import to_tflite  # noqa: E402
from perfcast.frontends.torch import export_module  # noqa: E402

NETS = {"resnet18": (resnet18, 11_689_512), "mobilenet_v2": (mobilenet_v2, 3_504_872)}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(NETS))
def test_direct_onnx_and_tflite_agree(name, tmp_path):
    make, torchvision_params = NETS[name]
    module = make()
    x = torch.randn(1, 3, 224, 224)
    direct = api.analyze(module, x)
    onnx_path = tmp_path / f"{name}.onnx"
    onnx_path.write_bytes(export_module(module, x).SerializeToString())
    via_onnx = api.analyze(str(onnx_path))
    tflite_path = tmp_path / f"{name}.tflite"
    tflite_path.write_bytes(to_tflite(api.load(module, x), with_weights=False))
    via_tflite = api.analyze(str(tflite_path))
    assert direct["params"] == via_onnx["params"] == via_tflite["params"] == torchvision_params
    assert direct["macs"] == via_onnx["macs"] == via_tflite["macs"]
    assert direct["format"] == "pytorch" and via_onnx["format"] == "onnx" and via_tflite["format"] == "tflite"
    assert via_onnx["content_hash"] == direct["content_hash"]
    assert not direct["unsupported_ops"] and not via_tflite["unsupported_ops"]


@pytest.mark.slow
def test_default_export_folds_batchnorm_and_loses_exactly_its_parameters(tmp_path):
    """torch.onnx.export's default optimiser folds BatchNorm into the convolution: the
    MACs stay, the parameters drop by exactly the BatchNorm scales and shifts."""
    module = resnet18()
    torch.manual_seed(0)
    for m in module.modules():  # trained-looking statistics, so that folding leaves non-zero biases
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.bias.data.uniform_(-1, 1)
    x = torch.randn(1, 3, 64, 64)
    path = tmp_path / "folded.onnx"
    torch.onnx.export(module.eval(), (x,), str(path), dynamo=True, external_data=False)
    folded = api.analyze(str(path))
    direct = api.analyze(module, x)
    bn = sum(m.weight.numel() + m.bias.numel() for m in module.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert folded["macs"] == direct["macs"]
    assert "BatchNormalization" not in folded["op_counts"]
    # a folded BatchNorm leaves a bias on its (bias-free) convolution: +C per conv
    conv_biases = sum(m.out_channels for m in module.modules() if isinstance(m, torch.nn.Conv2d))
    assert folded["params"] == direct["params"] - bn + conv_biases
