"""Sampled task spaces: ``<space>:<seed>`` is the seed-th random network of a task space.

Importing this package registers ``imgcls``, ``kws``, ``sr``, ``det``, ``seg``, ``vit``,
``bert``, ``gpt`` and ``rnn``; each module documents its ranges and exposes its config
dataclass, ``sample(seed, options)`` and ``describe(seed, options)``.
"""

from perfcast.spaces.tasks import bert, det, gpt, imgcls, kws, rnn, seg, sr, vit

TASK_SPACES = {m.SPACE.prefix: m for m in (imgcls, kws, sr, det, seg, vit, bert, gpt, rnn)}

__all__ = ["TASK_SPACES", "bert", "det", "gpt", "imgcls", "kws", "rnn", "seg", "sr", "vit"]
