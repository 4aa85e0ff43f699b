"""Spec strings (``prefix:body?key=value&...``) and the spaces that build them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable
from urllib.parse import parse_qsl

from perfcast.errors import SpecError
from perfcast.ir.graph import Graph

# build(body, options, batch_size) -> Graph; raises SpecError for a bad body or option
Builder = Callable[[str, dict[str, str], int], Graph]


@dataclass(frozen=True)
class Space:
    prefix: str
    build: Builder
    description: str
    # Random task spaces: build(str(seed), ...) gives the seed-th network.
    sampled: bool = False


_SPACES: dict[str, Space] = {}
# prefix -> sampler(numpy Generator) -> spec string, for spaces that are not seed-indexed
_SAMPLERS: dict[str, Callable] = {}
# prefix -> the spec strings of an enumerable space (the zoo)
_ENUMERATORS: dict[str, Callable[[], list[str]]] = {}


def register_sampler(prefix: str) -> Callable:
    def deco(fn: Callable) -> Callable:
        _SAMPLERS[prefix] = fn
        return fn

    return deco


def register_enumerator(prefix: str) -> Callable:
    def deco(fn: Callable[[], list[str]]) -> Callable[[], list[str]]:
        _ENUMERATORS[prefix] = fn
        return fn

    return deco


def sample_specs(prefix: str, count: int, seed: int) -> list[str]:
    """``count`` spec strings of a space, the same for the same seed on any machine.

    Seed-indexed task spaces give ``prefix:seed``, ``prefix:seed+1``...; NAS spaces draw
    architectures from a generator seeded with ``seed``; the zoo lists its entries in order.
    """
    import numpy as np

    space = _SPACES[prefix]
    if space.sampled:
        return [f"{prefix}:{seed + i}" for i in range(count)]
    if prefix in _SAMPLERS:
        rng = np.random.default_rng(seed)
        return [_SAMPLERS[prefix](rng) for _ in range(count)]
    if prefix in _ENUMERATORS:
        names = _ENUMERATORS[prefix]()
        return names[seed: seed + count]
    raise SpecError(prefix, "this space cannot be sampled")


def register_space(prefix: str, description: str, sampled: bool = False) -> Callable[[Builder], Builder]:
    def deco(fn: Builder) -> Builder:
        if prefix in _SPACES:
            raise ValueError(f"space {prefix!r} registered twice")
        _SPACES[prefix] = Space(prefix, fn, description, sampled)
        return fn

    return deco


def spaces() -> dict[str, Space]:
    return dict(sorted(_SPACES.items()))


def split_spec(spec: str) -> tuple[str, str, dict[str, str]]:
    """``zoo:mobilenet_v2?width=0.75`` -> ("zoo", "mobilenet_v2", {"width": "0.75"})."""
    prefix, sep, rest = spec.partition(":")
    if not sep or not prefix:
        raise SpecError(spec, "not a spec string (expected PREFIX:BODY)")
    body, _, query = rest.partition("?")
    try:
        options = dict(parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)))
    except ValueError:
        raise SpecError(spec, f"malformed options {query!r} (expected key=value&key=value)") from None
    return prefix, body, options


def is_spec(ref: str) -> bool:
    prefix = ref.partition(":")[0]
    return ":" in ref and prefix in _SPACES


def build_spec(spec: str, batch_size: int = 1) -> Graph:
    prefix, body, options = split_spec(spec)
    space = _SPACES.get(prefix)
    if space is None:
        known = ", ".join(sorted(_SPACES))
        raise SpecError(spec, f"unknown space {prefix!r} (known: {known})")
    if not body:
        raise SpecError(spec, f"empty body after '{prefix}:'")
    try:
        graph = space.build(body, options, batch_size)
    except SpecError as exc:
        if exc.subject == spec:
            raise
        raise SpecError(spec, exc.problem) from None
    graph.name = spec  # a graph built from a spec is named by it (its space is the prefix)
    return graph


def option(options: dict[str, str], key: str, kind: type, default, lo=None, hi=None, spec: str = ""):
    """Read one option, checking type and range; unknown options are checked by
    :func:`reject_unknown`."""
    if key not in options:
        return default
    raw = options[key]
    try:
        value = kind(raw)
    except ValueError:
        what = {int: "an integer", float: "a number"}.get(kind, f"a {kind.__name__}")
        raise SpecError(spec or key, f"option {key}={raw!r} is not {what}") from None
    if isinstance(value, float) and value != value:
        raise SpecError(spec or key, f"option {key}={raw!r} is not a finite number")
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise SpecError(spec or key, f"option {key}={raw} is out of range [{lo}, {hi}]")
    return value


def reject_unknown(options: dict[str, str], allowed: set[str], spec: str = "") -> None:
    extra = sorted(set(options) - allowed)
    if extra:
        allowed_s = ", ".join(sorted(allowed)) or "none"
        raise SpecError(spec or extra[0], f"unknown option {extra[0]!r} (allowed: {allowed_s})")
