"""Random architectures of the NAS spaces, drawn uniformly from each space's choices
(used by ``perfcast generate`` and the calibration sets)."""

from __future__ import annotations

import json

from perfcast.spaces import fbnet, nb201, ofa
from perfcast.spaces.registry import register_sampler

FBNET_BLOCKS = tuple(fbnet.BLOCKS)


@register_sampler("nb201")
def sample_nb201(rng) -> str:
    ops = [nb201.OPS[i] for i in rng.integers(0, len(nb201.OPS), 6)]
    cells = [f"|{ops[0]}~0|", f"|{ops[1]}~0|{ops[2]}~1|", f"|{ops[3]}~0|{ops[4]}~1|{ops[5]}~2|"]
    return "nb201:" + "+".join(cells)


@register_sampler("fbnet")
def sample_fbnet(rng) -> str:
    return "fbnet:" + " ".join(FBNET_BLOCKS[i] for i in rng.integers(0, len(FBNET_BLOCKS), 22))


@register_sampler("ofa")
def sample_ofa(rng) -> str:
    config = {
        "ks": [int(k) for k in rng.choice(ofa.KERNELS, 20)],
        "e": [int(e) for e in rng.choice(ofa.EXPANDS, 20)],
        "d": [int(d) for d in rng.choice(ofa.DEPTHS, 5)],
        "r": int(rng.choice(ofa.RESOLUTIONS)),
    }
    return "ofa:" + json.dumps(config, separators=(",", ":"))
