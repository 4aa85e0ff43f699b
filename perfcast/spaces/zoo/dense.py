"""Dense-prediction networks of the zoo: segmentation and detection.

- ``unet``: U-Net (Ronneberger et al. 2015) as commonly reimplemented (e.g. milesial's
  Pytorch-UNet with transposed convolutions): padded 3x3 conv-BN-ReLU pairs, four
  2x2 max-pool downs, four ConvTranspose 2x2 stride-2 ups (with bias) each followed by
  concatenation with the skip and a conv pair, 1x1 head with bias. Options ``res``
  (a multiple of 16, default 256), ``base`` (first-level width, default 64; levels use
  base x 1, 2, 4, 8, 16) and ``classes`` (default 2). Base 64 with 2 classes:
  31,037,698 params (as Pytorch-UNet), 48.17 GMACs at 256x256.
- ``ssdlite_mobilenet_v2``: SSDLite (Sandler et al. 2018) on a MobileNetV2 backbone,
  built the way torchvision builds ssdlite320_mobilenet_v3_large: features at stride 16
  (the 576-channel expansion of the first stride-32 block) and stride 32 (the 1280
  channel last conv), four extra blocks (1x1 to half width, depthwise 3x3 stride 2,
  1x1; BN + ReLU6, widths 512, 256, 256, 128) and, on all six maps, SSDLite heads
  (depthwise 3x3 + BN + ReLU6, then 1x1 conv with bias) for 6 anchors x 4 box
  offsets and 6 anchors x ``classes`` scores. Outputs ``boxes (B, A, 4)`` and
  ``scores (B, A, classes)``, the per-map predictions concatenated; no anchor
  decoding or NMS. Options ``res`` (a multiple of 32, default 320) and ``classes``
  (default 91, COCO with background). At 320x320: 4,664,988 params, 0.870 GMACs (the
  SSDLite paper's TF model, with 3 anchors on the first map and 300x300 input: 4.3M, 0.8G).
  Both networks are checked against plain-torch definitions in the tests.
"""

from __future__ import annotations

from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.zoo import register_zoo
from perfcast.spaces.zoo.cnn import MOBILENET_V2_CFG, MBConv, conv_bn_act, inverted_residual
from perfcast.spaces.zoo.transformers import image_options


# -- U-Net ---------------------------------------------------------------------------------
def double_conv(b: GraphBuilder, x: str, cout: int) -> str:
    """Two 3x3 conv (no bias) -> BN -> ReLU."""
    return conv_bn_act(b, conv_bn_act(b, x, cout, 3), cout, 3)


def unet_graph(res: int, base: int, classes: int, batch: int, name: str, levels: int = 4) -> Graph:
    """U-Net on a ``(batch, 3, res, res)`` image; output ``(batch, classes, res, res)`` logits."""
    b = GraphBuilder(name)
    x = double_conv(b, b.input((batch, 3, res, res)), base)
    skips = []
    for level in range(1, levels + 1):
        skips.append(x)
        x = double_conv(b, b.maxpool(x, 2), base * 2 ** level)
    for skip in reversed(skips):
        width = b.shape(skip)[1]
        up = b.conv_transpose(x, width, 2, stride=2, bias=True)
        x = double_conv(b, b.concat([skip, up], axis=1), width)
    b.output(b.conv(x, classes, 1, bias=True))
    return b.build()


# -- SSDLite ---------------------------------------------------------------------------------
SSD_EPS = 1e-3
SSD_EXTRAS = (512, 256, 256, 128)
SSD_ANCHORS = 6


def _mbv2_features(b: GraphBuilder, x: str) -> tuple[str, str]:
    """MobileNetV2 (width 1.0) split inside its stride-32 block: the expansion output
    of that block at stride 16 (576 channels) and the last 1280-channel conv at stride 32."""
    x = conv_bn_act(b, x, 32, 3, 2, act="relu6", eps=SSD_EPS)
    stride, c4 = 2, ""
    for t, c, n, s in MOBILENET_V2_CFG:
        for i in range(n):
            blk = MBConv(3, b.shape(x)[1] * t, c, s if i == 0 else 1, "relu6")
            if stride == 16 and blk.stride == 2:
                c4 = conv_bn_act(b, x, blk.expanded, 1, act="relu6", eps=SSD_EPS)
                x = conv_bn_act(b, c4, blk.expanded, 3, 2, groups=blk.expanded, act="relu6", eps=SSD_EPS)
                x = conv_bn_act(b, x, c, 1, act="identity", eps=SSD_EPS)
            else:
                x = inverted_residual(b, x, blk, eps=SSD_EPS)
            stride *= blk.stride
    return c4, conv_bn_act(b, x, 1280, 1, act="relu6", eps=SSD_EPS)


def _extra_block(b: GraphBuilder, x: str, cout: int) -> str:
    """1x1 to cout / 2, depthwise 3x3 stride 2, 1x1 to cout; each BN + ReLU6."""
    mid = cout // 2
    x = conv_bn_act(b, x, mid, 1, act="relu6", eps=SSD_EPS)
    x = conv_bn_act(b, x, mid, 3, 2, groups=mid, act="relu6", eps=SSD_EPS)
    return conv_bn_act(b, x, cout, 1, act="relu6", eps=SSD_EPS)


def _ssdlite_head(b: GraphBuilder, x: str, per_anchor: int) -> str:
    """Depthwise 3x3 + BN + ReLU6, 1x1 conv with bias to anchors x per_anchor, as
    ``(B, H * W * anchors, per_anchor)`` (torchvision's view/permute/reshape)."""
    c = b.shape(x)[1]
    y = b.conv(conv_bn_act(b, x, c, 3, groups=c, act="relu6", eps=SSD_EPS), SSD_ANCHORS * per_anchor, 1, bias=True)
    n, _, h, w = b.shape(y)
    y = b.transpose(b.reshape(y, (n, SSD_ANCHORS, per_anchor, h, w)), (0, 3, 4, 1, 2))
    return b.reshape(y, (n, h * w * SSD_ANCHORS, per_anchor))


def ssdlite_graph(res: int, classes: int, batch: int, name: str) -> Graph:
    """SSDLite-MobileNetV2 on a ``(batch, 3, res, res)`` image; outputs boxes and scores."""
    b = GraphBuilder(name)
    maps = list(_mbv2_features(b, b.input((batch, 3, res, res))))
    for width in SSD_EXTRAS:
        maps.append(_extra_block(b, maps[-1], width))
    boxes = [_ssdlite_head(b, m, 4) for m in maps]
    scores = [_ssdlite_head(b, m, classes) for m in maps]
    b.output(b.concat(boxes, axis=1))
    b.output(b.concat(scores, axis=1))
    return b.build()


# -- registration ------------------------------------------------------------------------------
def _build_unet(options: dict[str, str], batch: int) -> Graph:
    opts = image_options("unet", options, 16, default_res=256, default_classes=2, base=(int, 64, 1, 256))
    return unet_graph(opts["res"], opts["base"], opts["classes"], batch, "unet")


def _build_ssdlite(options: dict[str, str], batch: int) -> Graph:
    opts = image_options("ssdlite_mobilenet_v2", options, 32, default_res=320, default_classes=91)
    return ssdlite_graph(opts["res"], opts["classes"], batch, "ssdlite_mobilenet_v2")


register_zoo("unet")(_build_unet)
register_zoo("ssdlite_mobilenet_v2")(_build_ssdlite)
