"""The machinery shared by the sampled task spaces: seed parsing, option domains,
a deterministic sampler and the MAC budget.

A task space draws the ``seed``-th network from ``random.Random(f"{prefix}:{seed}")``
using only :meth:`random.Random.random`, whose sequence for a given seed Python
guarantees across versions and machines. Options named in the spec string
(``imgcls:5?family=resnet``) replace the drawn value of that dimension; the draw
still happens, so the other dimensions stay those of the unfixed seed. A draw
that breaks a constraint or goes over :data:`MAX_MACS` is redrawn from the same
stream, up to :data:`MAX_ATTEMPTS` times.
"""

from __future__ import annotations

import random
import re
from dataclasses import asdict, dataclass
from typing import Any, Callable, Generic, Sequence, TypeVar
from urllib.parse import urlencode

from perfcast.analysis import analyze_graph
from perfcast.errors import SpecError
from perfcast.ir.graph import Graph
from perfcast.spaces.registry import register_space, reject_unknown

# Every sampled network stays under this many multiply-accumulates at batch size 1,
# which keeps one onnxruntime CPU inference well under 2 s.
MAX_MACS = 8_000_000_000
MAX_ATTEMPTS = 100
MAX_SEED = 2**31 - 1

_SEED_RE = re.compile(r"[0-9]+")


class Redraw(Exception):
    """A draw broke a constraint between dimensions; draw again."""


@dataclass(frozen=True)
class Ints:
    """Integers ``lo, lo + step, ..., hi`` (``hi`` included when on the grid)."""

    lo: int
    hi: int
    step: int = 1

    @property
    def values(self) -> tuple[int, ...]:
        return tuple(range(self.lo, self.hi + 1, self.step))

    def parse(self, raw: str, key: str, spec: str) -> int:
        try:
            value = int(raw)
        except ValueError:
            raise SpecError(spec, f"option {key}={raw!r} is not an integer") from None
        if value not in self.values:
            grid = f" in steps of {self.step}" if self.step > 1 else ""
            raise SpecError(spec, f"option {key}={raw} is out of range [{self.lo}, {self.hi}]{grid}")
        return value

    def describe(self) -> str:
        """The range as docs/spaces.md writes it."""
        return f"{self.lo}-{self.hi}" + (f" step {self.step}" if self.step > 1 else "")


@dataclass(frozen=True)
class Choice:
    """One of a fixed tuple of values (str, int, float or bool)."""

    values: tuple

    def parse(self, raw: str, key: str, spec: str):
        kind = type(self.values[0])
        try:
            if kind is bool:
                if raw.lower() not in ("0", "1", "true", "false"):
                    raise ValueError
                value = raw.lower() in ("1", "true")
            else:
                value = kind(raw)
        except ValueError:
            value = None
        if value is None or value not in self.values:
            allowed = ", ".join(str(v) for v in self.values)
            raise SpecError(spec, f"option {key}={raw!r} is not one of {allowed}")
        return value

    def describe(self) -> str:
        """The values as docs/spaces.md writes them."""
        return ", ".join(str(v) for v in self.values)


Domain = Ints | Choice


class Sampler:
    """Draws dimensions from one seeded stream; named options may be fixed."""

    def __init__(self, rng: random.Random, domains: dict[str, Domain], fixed: dict[str, Any]) -> None:
        self.rng = rng
        self.domains = domains
        self.fixed = fixed
        self.drawn: dict[str, Any] = {}

    def pick(self, values: Sequence):
        """A uniform draw from ``values``."""
        return values[min(int(self.rng.random() * len(values)), len(values) - 1)]

    def integer(self, lo: int, hi: int, step: int = 1) -> int:
        return self.pick(range(lo, hi + 1, step))

    def flip(self, p: float = 0.5) -> bool:
        return self.rng.random() < p

    def draw(self, name: str):
        """The option ``name``: the fixed value, or drawn from its domain (the draw
        happens either way, so fixing one option leaves the others unchanged)."""
        value = self.fixed.get(name, self.pick(self.domains[name].values))
        self.drawn[name] = value
        return value

    def given(self, name: str, value):
        """The option ``name`` where it is fixed, else ``value`` (drawn by the caller
        where the domain alone does not say how, e.g. under a divisibility rule)."""
        return self.fixed.get(name, value)


Cfg = TypeVar("Cfg")


@dataclass(frozen=True)
class TaskSpace(Generic[Cfg]):
    """A sampled space: option domains, a draw function and a graph builder.

    The options named in ``keep`` (a family, say) keep their first drawn value
    when a draw is redrawn, so that the budget does not skew their distribution.
    """

    prefix: str
    options: dict[str, Domain]
    draw: Callable[[Sampler], Cfg]
    build: Callable[[Cfg, int, str], Graph]
    keep: tuple[str, ...] = ()

    def sample(self, seed: int, options: dict[str, str] | None = None) -> Cfg:
        """The config of the ``seed``-th network (with ``options`` fixed)."""
        return self._sample(seed, options)[0]

    def _sample(self, seed: int, options: dict[str, str] | None = None, spec: str = "") -> tuple[Cfg, Graph]:
        """The config and its graph at batch size 1."""
        options = dict(options or {})
        spec = spec or spec_string(self.prefix, str(seed), options)
        if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed <= MAX_SEED:
            raise SpecError(spec, f"seed must be an integer in [0, {MAX_SEED}], not {seed!r}")
        reject_unknown(options, set(self.options), spec)
        fixed = {k: self.options[k].parse(v, k, spec) for k, v in options.items()}
        rng = random.Random(f"{self.prefix}:{seed}")
        broken: list[str] = []
        for _ in range(MAX_ATTEMPTS):
            sampler = Sampler(rng, self.options, fixed)
            try:
                cfg = self.draw(sampler)
            except Redraw as exc:
                broken.append(str(exc))
            else:
                graph = self.build(cfg, 1, spec)
                if graph_macs(graph) <= MAX_MACS:
                    return cfg, graph
            fixed = {**{k: sampler.drawn[k] for k in self.keep if k in sampler.drawn}, **fixed}
        if len(broken) == MAX_ATTEMPTS:
            raise SpecError(spec, f"no network satisfies these options ({broken[0]})")
        raise SpecError(spec, f"no network of these options within {MAX_MACS / 1e9:g} GMACs in {MAX_ATTEMPTS} draws")

    def describe(self, seed: int, options: dict[str, str] | None = None) -> dict:
        """The sampled config as plain JSON types (tuples become lists), for manifests."""
        return _plain(asdict(self.sample(seed, options)))

    def graph(self, seed: int, options: dict[str, str] | None = None, batch_size: int = 1) -> Graph:
        return self._graph(seed, options or {}, batch_size, spec_string(self.prefix, str(seed), options or {}))

    def build_spec(self, body: str, options: dict[str, str], batch_size: int) -> Graph:
        spec = spec_string(self.prefix, body, options)
        return self._graph(parse_seed(body, spec), options, batch_size, spec)

    def _graph(self, seed: int, options: dict[str, str], batch_size: int, spec: str) -> Graph:
        cfg, graph = self._sample(seed, options, spec)
        return graph if batch_size == 1 else self.build(cfg, batch_size, spec)


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def define_space(space: TaskSpace, description: str) -> TaskSpace:
    """Register ``space`` under its prefix as a sampled space."""
    register_space(space.prefix, description, sampled=True)(space.build_spec)
    return space


def parse_seed(body: str, spec: str) -> int:
    if not _SEED_RE.fullmatch(body):
        raise SpecError(spec, f"seed {body!r} is not a non-negative integer")
    seed = int(body)
    if seed > MAX_SEED:
        raise SpecError(spec, f"seed {seed} is larger than {MAX_SEED}")
    return seed


def spec_string(prefix: str, body: str, options: dict[str, str]) -> str:
    return f"{prefix}:{body}" + (f"?{urlencode(options)}" if options else "")


def graph_macs(graph: Graph) -> int:
    return analyze_graph(graph).macs


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round a channel count to a multiple of ``divisor`` without losing more than 10%
    (the rule of the MobileNet and EfficientNet reference code)."""
    out = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return out + divisor if out < 0.9 * value else out


def draw_width_heads(s: Sampler) -> tuple[int, int]:
    """The ``width`` and ``heads`` options of a transformer; the width must split
    evenly into heads, so other pairs are redrawn."""
    width, heads = s.draw("width"), s.draw("heads")
    if width % heads:
        raise Redraw(f"width {width} is not divisible by {heads} heads")
    return width, heads
