"""Once-for-all MobileNetV3 subnets: ``ofa:{"ks":[20],"e":[20],"d":[5],"r":R}``.

Subnets of OFA's ``ofa_mbv3_d234_e346_k357_w1.2`` supernet (Cai et al., ICLR 2020;
``OFAMobileNetV3`` with width multiplier 1.2), the space of HELP's OFA data. Channel
counts are the base widths times 1.2 made divisible by 8 (OFA's ``make_divisible``):

- first conv: 3x3 stride 2, 3->24, BN, h-swish;
- first block: depthwise 3x3 + BN + ReLU, 1x1 24->24 + BN, identity residual;
- 5 stages of 4 blocks with output widths 32, 48, 96, 136, 192, first-block strides 2, 2,
  2, 1, 2, activations relu, relu, h-swish, h-swish, h-swish, squeeze-and-excitation in
  stages 2, 4 and 5; only the first ``d[i]`` blocks of stage i run, block j taking its
  kernel size and expand ratio from slot ``4 * i + j`` of ``ks`` and ``e``;
- a block (MBConv): 1x1 ``cin -> mid`` + BN + act with ``mid = make_divisible(cin * e, 8)``,
  ``k x k`` depthwise (stride, padding k // 2) + BN + act, SE (global average pool, 1x1
  conv ``mid -> make_divisible(mid // 4, 8)`` with bias, ReLU, 1x1 conv back with bias,
  h-sigmoid, multiply), 1x1 ``mid -> cout`` + BN, identity residual when the stride is 1
  and ``cin == cout``;
- head: 1x1 conv 192->1152 + BN + h-swish, global average pooling, 1x1 conv 1152->1536
  (no bias, no BN) + h-swish, linear layer to 1000 classes.

Values: ``ks`` 20 of {3, 5, 7}, ``e`` 20 of {3, 4, 6}, ``d`` 5 of {2, 3, 4}, ``r`` the input
resolution, 128..224 in steps of 4 (OFA's elastic resolutions; HELP's data uses them all).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

from perfcast.errors import SpecError
from perfcast.ir.builder import GraphBuilder
from perfcast.ir.graph import Graph
from perfcast.spaces.registry import register_space, reject_unknown
from perfcast.spaces.zoo.cnn import conv_bn_act, make_divisible, squeeze_excite

WIDTH_MULT = 1.2
DIVISOR = 8
KERNELS = (3, 5, 7)
EXPANDS = (3, 4, 6)
DEPTHS = (2, 3, 4)
RESOLUTIONS = tuple(range(128, 225, 4))
MAX_DEPTH = 4
N_STAGES = 5
BASE_WIDTHS = (16, 16, 24, 40, 80, 112, 160, 960, 1280)
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_ACTS = ("relu", "relu", "hswish", "hswish", "hswish")
STAGE_SE = (False, True, False, True, True)
SE_REDUCTION = 4
CLASSES = 1000
SHARED_DATA_FILES = ("help_ofa_latency.csv.gz",)

WIDTHS = tuple(make_divisible(w * WIDTH_MULT, DIVISOR) for w in BASE_WIDTHS)
FIRST_CONV, FIRST_BLOCK, STAGE_WIDTHS = WIDTHS[0], WIDTHS[1], WIDTHS[2:7]
FINAL_EXPAND, LAST_CHANNEL = WIDTHS[7], WIDTHS[8]


@dataclass(frozen=True)
class SubnetConfig:
    """A checked subnet: kernel size and expand ratio of each of the 20 block slots, depth
    of each of the 5 stages, input resolution."""

    ks: tuple[int, ...]
    e: tuple[int, ...]
    d: tuple[int, ...]
    r: int


def parse_config(body: str) -> SubnetConfig:
    """JSON ``{"ks": [...], "e": [...], "d": [...], "r": R}`` -> a checked config."""
    try:
        raw = json.loads(body)
    except json.JSONDecodeError as exc:
        raise SpecError(body, f"not valid JSON ({exc.msg} at character {exc.pos})") from None
    if not isinstance(raw, dict):
        raise SpecError(body, 'expected a JSON object {"ks": [...], "e": [...], "d": [...], "r": R}')
    missing = [k for k in ("ks", "e", "d", "r") if k not in raw]
    extra = sorted(set(raw) - {"ks", "e", "d", "r"})
    if missing or extra:
        what = f"missing key {missing[0]!r}" if missing else f"unknown key {extra[0]!r}"
        raise SpecError(body, f"{what} (keys: ks, e, d, r)")
    n = N_STAGES * MAX_DEPTH
    return SubnetConfig(
        ks=_int_list(body, raw, "ks", n, KERNELS),
        e=_int_list(body, raw, "e", n, EXPANDS),
        d=_int_list(body, raw, "d", N_STAGES, DEPTHS),
        r=_one_of(body, "r", raw["r"], RESOLUTIONS),
    )


def _int_list(body: str, raw: dict, key: str, length: int, allowed: tuple[int, ...]) -> tuple[int, ...]:
    values = raw[key]
    if not isinstance(values, list) or len(values) != length:
        found = f"{len(values)} values" if isinstance(values, list) else type(values).__name__
        raise SpecError(body, f"{key!r} must be a list of {length} integers, found {found}")
    return tuple(_one_of(body, f"{key}[{i}]", v, allowed) for i, v in enumerate(values))


def _one_of(body: str, what: str, value, allowed: tuple[int, ...]) -> int:
    if type(value) is not int or value not in allowed:
        shown = f"{allowed[0]}..{allowed[-1]} step {allowed[1] - allowed[0]}" if len(allowed) > 3 else str(set(allowed))
        raise SpecError(body, f"{what} = {value!r} is out of range (allowed: {shown})")
    return value


def spec_from_config(ofa_config: str) -> str:
    """The spec string of HELP's ``ofa_config`` JSON, written compactly."""
    cfg = parse_config(ofa_config)
    body = {"ks": list(cfg.ks), "e": list(cfg.e), "d": list(cfg.d), "r": cfg.r}
    return "ofa:" + json.dumps(body, separators=(",", ":"))


def spec_for_row(source_file: str, row: dict[str, str]) -> str:
    """The spec string of one row of a shared-data CSV with OFA subnets."""
    if os.path.basename(source_file) not in SHARED_DATA_FILES:
        raise ValueError(f"{source_file} holds no OFA subnets (files: {', '.join(SHARED_DATA_FILES)})")
    return spec_from_config(row["ofa_config"])


@register_space("ofa", 'once-for-all MobileNetV3 w1.2 subnets, ofa:{"ks":[20],"e":[20],"d":[5],"r":R}')
def build_ofa(body: str, options: dict[str, str], batch_size: int) -> Graph:
    reject_unknown(options, set())
    return ofa_graph(parse_config(body), batch_size, name=f"ofa:{body}")


def ofa_graph(cfg: SubnetConfig, batch_size: int = 1, name: str = "") -> Graph:
    b = GraphBuilder(name)
    x = conv_bn_act(b, b.input((batch_size, 3, cfg.r, cfg.r)), FIRST_CONV, 3, 2, act="hswish")
    x = _mbconv(b, x, FIRST_BLOCK, 3, 1, 1, "relu", se=False)
    for stage in range(N_STAGES):
        for j in range(cfg.d[stage]):
            slot = stage * MAX_DEPTH + j
            stride = STAGE_STRIDES[stage] if j == 0 else 1
            x = _mbconv(b, x, STAGE_WIDTHS[stage], cfg.ks[slot], stride, cfg.e[slot], STAGE_ACTS[stage], STAGE_SE[stage])
    x = b.global_avgpool(conv_bn_act(b, x, FINAL_EXPAND, 1, act="hswish"))
    x = b.act(b.conv(x, LAST_CHANNEL, 1), "hswish")
    b.output(b.linear(b.flatten(x), CLASSES))
    return b.build()


def _mbconv(b: GraphBuilder, x: str, cout: int, k: int, stride: int, expand: int, act: str, se: bool) -> str:
    cin = b.shape(x)[1]
    y = x
    mid = cin
    if expand != 1:
        mid = make_divisible(round(cin * expand), DIVISOR)
        y = conv_bn_act(b, y, mid, 1, act=act)
    y = conv_bn_act(b, y, mid, k, stride, groups=mid, act=act)
    if se:
        y = squeeze_excite(b, y, make_divisible(mid // SE_REDUCTION, DIVISOR), "relu", "hsigmoid")
    y = conv_bn_act(b, y, cout, 1, act="identity")
    return b.add(y, x) if stride == 1 and cin == cout else y

