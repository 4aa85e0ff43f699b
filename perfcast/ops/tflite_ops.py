"""Cost rules for TFLite builtin operators (NHWC layout).

The conventions are those of :mod:`perfcast.ops.onnx_ops`: ``macs`` counts the
multiply-accumulates of convolutions, matrix products and recurrent cells;
``flops`` is 2 x macs plus one per elementwise result, compound activations
counted as the primitive ops they are made of, and one more per output element
where an operator carries a fused activation (``fused_activation_function``).
Parameters are the constant weight and bias inputs of MAC-based ops, and the
constant floating-point (or int8/uint8 quantised) inputs with more than one
element of elementwise ops (BatchNorm folded into MUL + ADD, PRELU slopes).

Filter layouts: CONV_2D (O, kh, kw, I); DEPTHWISE_CONV_2D (1, kh, kw, C*mult);
TRANSPOSE_CONV (O, kh, kw, I); CONV_3D (kd, kh, kw, I, O); CONV_3D_TRANSPOSE
(kd, kh, kw, O, I); FULLY_CONNECTED (O, I).
"""

from __future__ import annotations

import math

from perfcast.ops.registry import OpContext, Rule, UnknownShape, Work, register

NO_ACTIVATION = ("NONE", 0, None)

# FLOPs per output element of elementwise ops.
ELEMENTWISE_FLOPS = {
    **dict.fromkeys((
        "ADD", "SUB", "MUL", "DIV", "POW", "MAXIMUM", "MINIMUM", "FLOOR_DIV", "FLOOR_MOD",
        "RELU", "RELU6", "RELU_N1_TO_1", "RELU_0_TO_1", "LOGISTIC", "TANH", "EXP", "LOG", "SQRT",
        "SQUARE", "ABS", "NEG", "SIN", "COS", "FLOOR", "CEIL", "ROUND", "SIGN", "ATAN2",
        "LESS", "LESS_EQUAL", "GREATER", "GREATER_EQUAL", "EQUAL", "NOT_EQUAL",
        "LOGICAL_AND", "LOGICAL_OR", "LOGICAL_NOT", "SELECT", "SELECT_V2", "BITWISE_XOR", "RIGHT_SHIFT",
    ), 1),
    "RSQRT": 2,  # square root, reciprocal
    "SQUARED_DIFFERENCE": 2,  # subtract, square
    "LEAKY_RELU": 2,
    "PRELU": 2,
    "ELU": 2,
    "HARD_SWISH": 4,  # hardsigmoid(x) * x
    "GELU": 4,
}

QUANTISED_PARAM_DTYPES = ("int8", "uint8")


def _fused_flops(ctx: OpContext) -> int:
    if ctx.attr("fused_activation_function") in NO_ACTIVATION:
        return 0
    return ctx.all_outputs_numel()


def _rule(*op_types: str):
    """Register a rule and add one FLOP per output element of a fused activation."""

    def deco(fn: Rule) -> Rule:
        def with_activation(ctx: OpContext) -> Work:
            work = fn(ctx)
            extra = _fused_flops(ctx)
            return work._replace(flops=work.flops + extra) if extra else work

        register(*op_types)(with_activation)
        return fn

    return deco


def _weight_like_inputs(ctx: OpContext) -> tuple[int, ...]:
    """Constant floating-point or int8/uint8 inputs with more than one element."""
    out = []
    for i in range(ctx.n_inputs):
        t = ctx.input(i)
        if t is None or not t.constant or not t.known or t.numel <= 1:
            continue
        if t.dtype.startswith(("float", "bfloat")) or t.dtype in QUANTISED_PARAM_DTYPES:
            out.append(i)
    return tuple(out)


def _dims(ctx: OpContext, i: int, rank: int | None = None, min_rank: int = 0) -> tuple[int, ...]:
    """The shape of input ``i``, which must have ``rank`` (or at least ``min_rank``) axes."""
    shape = ctx.in_shape(i)
    if (rank is not None and len(shape) != rank) or len(shape) < min_rank:
        want = rank if rank is not None else f"at least {min_rank}"
        raise UnknownShape(f"{ctx.op_type} {ctx.node.name!r}: input {i} has shape {shape}, not of rank {want}")
    return shape


def _bias_flops(ctx: OpContext, index: int) -> int:
    return ctx.out_numel() if ctx.has_input(index) else 0


# --- elementwise ------------------------------------------------------------------------
@_rule(*ELEMENTWISE_FLOPS)
def _elementwise(ctx: OpContext) -> Work:
    return Work(flops=ELEMENTWISE_FLOPS[ctx.op_type] * ctx.out_numel(), param_inputs=_weight_like_inputs(ctx))


@_rule("ADD_N")
def _add_n(ctx: OpContext) -> Work:
    n = sum(1 for i in range(ctx.n_inputs) if ctx.has_input(i))
    return Work(flops=max(n - 1, 1) * ctx.out_numel(), param_inputs=_weight_like_inputs(ctx))


@_rule("SOFTMAX", "LOG_SOFTMAX")
def _softmax(ctx: OpContext) -> Work:
    return Work(flops=3 * ctx.out_numel())  # exp, running sum, divide


@_rule("L2_NORMALIZATION")
def _l2_norm(ctx: OpContext) -> Work:
    return Work(flops=3 * ctx.out_numel())


@_rule("LOCAL_RESPONSE_NORMALIZATION")
def _lrn(ctx: OpContext) -> Work:
    size = 2 * int(ctx.attr("radius", 0)) + 1
    return Work(flops=(size + 3) * ctx.out_numel())


# --- convolutions and matrix products -------------------------------------------------------
@_rule("CONV_2D")
def _conv2d(ctx: OpContext) -> Work:
    _, kh, kw, cin = _dims(ctx, 1, 4)
    macs = ctx.out_numel() * kh * kw * cin
    return Work(macs=macs, flops=2 * macs + _bias_flops(ctx, 2), param_inputs=(1, 2))


@_rule("DEPTHWISE_CONV_2D")
def _depthwise_conv2d(ctx: OpContext) -> Work:
    _, kh, kw, _ = _dims(ctx, 1, 4)
    macs = ctx.out_numel() * kh * kw
    return Work(macs=macs, flops=2 * macs + _bias_flops(ctx, 2), param_inputs=(1, 2))


@_rule("CONV_3D")
def _conv3d(ctx: OpContext) -> Work:
    kd, kh, kw, cin, _ = _dims(ctx, 1, 5)
    macs = ctx.out_numel() * kd * kh * kw * cin
    return Work(macs=macs, flops=2 * macs + _bias_flops(ctx, 2), param_inputs=(1, 2))


@_rule("TRANSPOSE_CONV")
def _transpose_conv(ctx: OpContext) -> Work:
    # inputs: output shape, filter (O, kh, kw, I), input, optional bias
    cout, kh, kw, _ = _dims(ctx, 1, 4)
    macs = ctx.in_numel(2) * kh * kw * cout
    return Work(macs=macs, flops=2 * macs + _bias_flops(ctx, 3), param_inputs=(1, 3))


@_rule("CONV_3D_TRANSPOSE")
def _conv3d_transpose(ctx: OpContext) -> Work:
    kd, kh, kw, cout, _ = _dims(ctx, 1, 5)
    macs = ctx.in_numel(2) * kd * kh * kw * cout
    return Work(macs=macs, flops=2 * macs + _bias_flops(ctx, 3), param_inputs=(1, 3))


@_rule("FULLY_CONNECTED")
def _fully_connected(ctx: OpContext) -> Work:
    k = _dims(ctx, 1, min_rank=1)[-1]
    macs = ctx.out_numel() * k
    return Work(macs=macs, flops=2 * macs + _bias_flops(ctx, 2), param_inputs=(1, 2))


@_rule("BATCH_MATMUL")
def _batch_matmul(ctx: OpContext) -> Work:
    a = _dims(ctx, 0, min_rank=2)
    k = a[-2] if ctx.attr("adj_x", 0) else a[-1]
    macs = ctx.out_numel() * k
    return Work(macs=macs, flops=2 * macs, param_inputs=_weight_like_inputs(ctx))


# --- recurrent layers ----------------------------------------------------------------------------
# state slots (variable tensors, not parameters) and cell FLOPs per output element
_RECURRENT = {
    "UNIDIRECTIONAL_SEQUENCE_LSTM": ((18, 19), 9),
    "LSTM": ((18, 19), 9),
    "BIDIRECTIONAL_SEQUENCE_LSTM": ((35, 36, 37, 38), 9),
    "UNIDIRECTIONAL_SEQUENCE_RNN": ((4,), 2),
    "RNN": ((4,), 2),
    "BIDIRECTIONAL_SEQUENCE_RNN": ((4, 8), 2),
}


# TFLite's LSTM and RNN share their names with ONNX operators: their rule applies to TFLite graphs only
_NAMES_SHARED_WITH_ONNX = ("LSTM", "RNN")


@register(*(op for op in _RECURRENT if op not in _NAMES_SHARED_WITH_ONNX))
@register(*_NAMES_SHARED_WITH_ONNX, source_format="tflite")
def _recurrent(ctx: OpContext) -> Work:
    """Every 2-D constant weight multiplies one vector per step and batch row; 1-D
    constants (biases, peepholes) add one FLOP per element per step. TFLite's kernels make both
    the input and the recurrent products step by step, so every 2-D weight is read once per step
    (as the recurrent weights of the ONNX rule, :func:`perfcast.ops.onnx_ops._recurrent`)."""
    states, cell = _RECURRENT[ctx.op_type]
    x = ctx.in_shape(0)
    rows = math.prod(x[:-1])  # steps x batch, whatever the time-major setting
    steps = (x[0] if ctx.attr("time_major", False) else x[1]) if len(x) == 3 else 1
    weights = [i for i in range(1, ctx.n_inputs) if i not in states and ctx.is_constant(i)]
    matrices = [i for i in weights if len(ctx.in_shape(i)) == 2]
    mat = sum(ctx.in_numel(i) for i in matrices)
    vec = sum(ctx.in_numel(i) for i in weights if len(ctx.in_shape(i)) == 1)
    macs = rows * mat
    outputs = sum(ctx.out_numel(i) for i in range(len(ctx.node.outputs)) if ctx.output(i) is not None)
    reread = (steps - 1) * sum(ctx.input(i).nbytes for i in matrices)
    return Work(macs=macs, flops=2 * macs + rows * vec + cell * outputs, param_inputs=tuple(weights),
                bytes_read=ctx.inputs_nbytes() + reread)


# --- pooling, reductions, resampling -------------------------------------------------------
@_rule("AVERAGE_POOL_2D", "MAX_POOL_2D", "L2_POOL_2D")
def _pool(ctx: OpContext) -> Work:
    window = int(ctx.attr("filter_height", 1)) * int(ctx.attr("filter_width", 1))
    return Work(flops=ctx.out_numel() * window)


@_rule("MEAN", "SUM", "REDUCE_MAX", "REDUCE_MIN", "REDUCE_PROD", "REDUCE_ANY", "REDUCE_ALL",
       "ARG_MAX", "ARG_MIN", "CUMSUM")
def _reduce(ctx: OpContext) -> Work:
    return Work(flops=ctx.in_numel())


@_rule("TOPK_V2")
def _topk(ctx: OpContext) -> Work:
    out = ctx.out_shape()
    k = max(out[-1] if out else 1, 2)
    return Work(flops=int(ctx.in_numel() * math.log2(k)))


@_rule("RESIZE_BILINEAR")
def _resize_bilinear(ctx: OpContext) -> Work:
    return Work(flops=2 * 4 * ctx.out_numel())  # 4 taps, a multiply and an add each


@_rule("RESIZE_NEAREST_NEIGHBOR")
def _resize_nearest(ctx: OpContext) -> Work:
    return Work()


# --- quantisation ------------------------------------------------------------------------------
@_rule("QUANTIZE", "DEQUANTIZE", "FAKE_QUANT")
def _quantize(ctx: OpContext) -> Work:
    return Work(flops=2 * ctx.out_numel())  # scale and shift per element


# --- data movement: no arithmetic, bytes only -------------------------------------------------
DATA_MOVEMENT = (
    "RESHAPE", "TRANSPOSE", "CONCATENATION", "SPLIT", "SPLIT_V", "SLICE", "STRIDED_SLICE", "GATHER",
    "GATHER_ND", "SCATTER_ND", "PAD", "PADV2", "MIRROR_PAD", "EXPAND_DIMS", "SQUEEZE", "PACK", "UNPACK",
    "TILE", "CAST", "DEPTH_TO_SPACE", "SPACE_TO_DEPTH", "BROADCAST_TO", "BATCH_TO_SPACE_ND",
    "SPACE_TO_BATCH_ND", "REVERSE_V2", "REVERSE_SEQUENCE", "ZEROS_LIKE", "FILL", "RANGE", "ONE_HOT",
    "EMBEDDING_LOOKUP", "WHERE", "UNIQUE", "BITCAST", "DYNAMIC_UPDATE_SLICE", "BROADCAST_ARGS",
    "MATRIX_DIAG", "MATRIX_SET_DIAG", "DENSIFY", "SPARSE_TO_DENSE",
)
# ops whose constant float inputs are learned tensors: lookup tables, tiled or concatenated tokens
_TABLE_READERS = ("GATHER", "GATHER_ND", "EMBEDDING_LOOKUP", "CONCATENATION", "TILE", "BROADCAST_TO")


@_rule(*DATA_MOVEMENT)
def _data_movement(ctx: OpContext) -> Work:
    if ctx.op_type in _TABLE_READERS:
        return Work(param_inputs=_weight_like_inputs(ctx))
    return Work()


@_rule("SHAPE", "RANK")
def _metadata(ctx: OpContext) -> Work:
    return Work(bytes_read=0)
