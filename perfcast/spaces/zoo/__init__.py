"""Named real-world networks: ``zoo:<name>?option=value``."""

from __future__ import annotations

from typing import Callable

from perfcast.errors import SpecError
from perfcast.ir.graph import Graph
from perfcast.spaces.registry import register_enumerator, register_space

# name -> build(options, batch_size) -> Graph
ZooBuilder = Callable[[dict[str, str], int], Graph]
_ZOO: dict[str, ZooBuilder] = {}


def register_zoo(*names: str) -> Callable[[ZooBuilder], ZooBuilder]:
    def deco(fn: ZooBuilder) -> ZooBuilder:
        for name in names:
            if name in _ZOO:
                raise ValueError(f"zoo entry {name!r} registered twice")
            _ZOO[name] = fn
        return fn

    return deco


def zoo_names() -> list[str]:
    return sorted(_ZOO)


@register_space("zoo", "named real-world networks, e.g. zoo:resnet50, zoo:mobilenet_v2?width=0.75&res=160")
def build_zoo(body: str, options: dict[str, str], batch_size: int) -> Graph:
    fn = _ZOO.get(body)
    if fn is None:
        raise SpecError(f"zoo:{body}", f"unknown zoo network {body!r} (known: {', '.join(zoo_names())})")
    return fn(options, batch_size)


from perfcast.spaces.zoo import cnn as _cnn  # noqa: E402,F401  (registers entries)
from perfcast.spaces.zoo import transformers as _transformers  # noqa: E402,F401  (registers entries)
from perfcast.spaces.zoo import dense as _dense  # noqa: E402,F401  (registers entries)


@register_enumerator("zoo")
def _zoo_specs() -> list[str]:
    return [f"zoo:{name}" for name in zoo_names()]
