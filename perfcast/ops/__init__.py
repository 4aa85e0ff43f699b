"""Per-operator cost rules, registered by op type.

Importing this package registers every rule; :func:`node_cost` looks one up.
"""

from perfcast.ops.registry import OpCost, UnknownShape, node_cost, rule_for, supported_op_types
from perfcast.ops import onnx_ops as _onnx_ops  # noqa: F401  (registers rules)
from perfcast.ops import tflite_ops as _tflite_ops  # noqa: F401  (registers rules)

__all__ = ["OpCost", "UnknownShape", "node_cost", "rule_for", "supported_op_types"]
