"""Random architectures of the NAS spaces, drawn uniformly from each space's choices
(used by ``perfcast generate`` and the calibration sets)."""

from __future__ import annotations

import json

from perfcast.spaces.registry import register_sampler

NB201_OPS = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
FBNET_BLOCKS = ("k3_e1", "k3_e1_g2", "k3_e3", "k3_e6", "k5_e1", "k5_e1_g2", "k5_e3", "k5_e6", "skip")
OFA_RESOLUTIONS = tuple(range(128, 225, 4))


@register_sampler("nb201")
def sample_nb201(rng) -> str:
    ops = [NB201_OPS[i] for i in rng.integers(0, len(NB201_OPS), 6)]
    cells = [f"|{ops[0]}~0|", f"|{ops[1]}~0|{ops[2]}~1|", f"|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"]
    return "nb201:" + "+".join(cells)


@register_sampler("fbnet")
def sample_fbnet(rng) -> str:
    return "fbnet:" + " ".join(FBNET_BLOCKS[i] for i in rng.integers(0, len(FBNET_BLOCKS), 22))


@register_sampler("ofa")
def sample_ofa(rng) -> str:
    config = {
        "ks": [int(k) for k in rng.choice([3, 5, 7], 20)],
        "e": [int(e) for e in rng.choice([3, 4, 6], 20)],
        "d": [int(d) for d in rng.choice([2, 3, 4], 5)],
        "r": int(rng.choice(OFA_RESOLUTIONS)),
    }
    return "ofa:" + json.dumps(config, separators=(",", ":"))
