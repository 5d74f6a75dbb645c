"""Fast CPU copies of a torchvision ResNet34 body: int8 (x86 static quantization, eager mode)
and fp32 with every BatchNorm folded into its convolution.

The part classifier (``models/part_classifier.py``) classifies each part crop with ResNet34;
on the CPU these copies are what let the pipeline keep pace with bare YOLO. int8 needs
activation ranges taken from real crops (:func:`int8_calibration`), which training stores
in the model file so that a loaded file quantizes exactly as the trained stage did.

Everything here works module by module, never with ``torch.fx``: fx tracing patches
``nn.Module.__call__`` for the whole process while it runs, which breaks any model running
meanwhile in another thread (the pipeline's YOLO runs beside the classifier).
torch and torchvision are imported inside the functions.
"""

from __future__ import annotations

import copy
from typing import Any

from models.base import CheckpointError


def resnet_features(net: Any, x: Any) -> Any:
    """ResNet34's stem and four stages: the ``(B, 512, h, w)`` feature map its average pool
    reduces. Works for the float net, the folded copy and the quantized one alike."""
    x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
    return net.layer4(net.layer3(net.layer2(net.layer1(x))))


def fold_batchnorm(net: Any) -> Any:
    """Copy of a ResNet in eval mode with every BatchNorm folded into the convolution before
    it (and replaced by Identity): same outputs up to float rounding, one pass less."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    net = copy.deepcopy(net).eval()
    pairs = [(net, "conv1", "bn1")]
    for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
        for block in layer:
            pairs += [(block, "conv1", "bn1"), (block, "conv2", "bn2")]
            if block.downsample is not None:
                pairs.append((block.downsample, "0", "1"))
    for parent, conv, bn in pairs:
        folded = fuse_conv_bn_eval(getattr(parent, conv), getattr(parent, bn))
        setattr(parent, conv, folded)
        setattr(parent, bn, nn.Identity())
    return net


def int8_supported() -> bool:
    """Whether this PyTorch build has the x86 quantized engine (not on ARM, for one)."""
    import torch

    return "x86" in torch.backends.quantized.supported_engines


def _int8_body(quantized: Any) -> Any:
    """The converted quantizable ResNet as a ``(B, 512)`` feature extractor that leaves int8
    before the average pool: pooling 7x7 int8 values in float gives embeddings with fine
    steps, where int8 pooling would round them to 256 levels (coarse for diversity
    sampling)."""
    from torch import nn

    class Int8ResNetBody(nn.Module):
        def __init__(self, q):
            super().__init__()
            self.q = q

        def forward(self, x):
            q = self.q
            return q.avgpool(q.dequant(resnet_features(q, q.quant(x)))).flatten(1)

    return Int8ResNetBody(quantized).eval()


def _observed_int8_body(net: Any) -> Any:
    """ResNet34 body (up to the average pool, ``(B, 512)`` float out) rebuilt as torchvision's
    quantizable ResNet with ``net``'s weights, conv+bn+relu fused and x86 observers attached:
    feed it calibration crops, then :func:`torch.ao.quantization.convert` it. Eager-mode
    quantization (module hooks only) is thread-safe, unlike fx's."""
    import torch
    from torch import nn
    from torchvision.models.quantization.resnet import QuantizableBasicBlock, QuantizableResNet

    torch.backends.quantized.engine = "x86"
    body = QuantizableResNet(QuantizableBasicBlock, [3, 4, 6, 3])
    body.fc = nn.Identity()
    weights = {k: v.cpu() for k, v in net.state_dict().items() if not k.startswith("fc.")}
    body.load_state_dict(weights)
    body.eval()
    body.fuse_model(is_qat=False)
    body.qconfig = torch.ao.quantization.get_default_qconfig("x86")
    return torch.ao.quantization.prepare(body)


def int8_calibration(net: Any, calib: Any) -> dict[str, Any]:
    """The activation ranges (observer state) of ``net`` on ``calib`` ``(B, 3, S, S)`` float
    crops: what :func:`quantize_int8` needs to rebuild the same int8 copy later."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # observer deprecation chatter
        body = _observed_int8_body(net)
        with torch.inference_mode():
            body(calib)
    return {k: v.clone() for k, v in body.state_dict().items() if "activation_post_process" in k}


def quantize_int8(net: Any, calibration: dict[str, Any]) -> Any:
    """int8 body of ``net`` (``(B, 3, S, S)`` float in, ``(B, 512)`` float out) with the
    activation ranges of :func:`int8_calibration`. Raises CheckpointError when the ranges do
    not fit the architecture."""
    import warnings

    import torch

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        body = _observed_int8_body(net)
        keys = body.load_state_dict(calibration, strict=False)
        bad = keys.unexpected_keys + [k for k in keys.missing_keys if "activation_post" in k]
        if bad:
            raise CheckpointError(
                f"the stored int8 calibration does not fit ResNet34 ({bad[:3]}); "
                f"retrain part_classifier or set its int8 option to false"
            )
        return _int8_body(torch.ao.quantization.convert(body))
