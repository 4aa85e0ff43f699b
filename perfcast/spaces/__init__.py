"""Architecture spaces behind spec strings: NAS spaces, sampled task spaces, the zoo.

Importing this package registers every space.
"""

from perfcast.spaces.registry import build_spec, is_spec, register_space, spaces, split_spec
from perfcast.spaces import nb201, fbnet, ofa, samplers, tasks, zoo  # noqa: F401  (register spaces)

__all__ = ["build_spec", "is_spec", "register_space", "spaces", "split_spec"]
