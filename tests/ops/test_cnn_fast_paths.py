"""Fast paths of CNN kernels (depthwise Conv, separable pools, conv_kernel epilogue, prepared
elementwise kernels) against onnxruntime / numpy."""

from __future__ import annotations

import math

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper, numpy_helper

import onnxrt
from onnxrt.ops import conv, pool
from onnxrt.ops.conv import conv_kernel
from onnxrt.ops.registry import KernelContext

_CHANNELS_LAST_LIMITS = ("_CHANNELS_LAST_MAX_KERNEL", "_CHANNELS_LAST_WIDE_KERNEL_MAX_WIDTH",
                         "_CHANNELS_LAST_MAX_STRIDED_PIXELS", "_CHANNELS_LAST_INPUT_MAX_STRIDED_PIXELS")


@pytest.fixture(params=["channel_first", "channels_last"])
def depthwise_path(request, monkeypatch):
    """Runs a depthwise test once with the channels-last path switched off (banded at stride 1,
    im2col when strided) and once with it taken for every shape it supports."""
    if request.param == "channel_first":
        monkeypatch.setattr(conv._ChannelsLastDepthwise, "takes", lambda self, x: False)
    else:
        for name in _CHANNELS_LAST_LIMITS:
            monkeypatch.setattr(conv, name, 1 << 30)
    return request.param


def _run_both(op_type, x, consts, **attrs):
    names = ["X"] + list(consts)
    node = helper.make_node(op_type, names, ["Y"], **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, x.shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in consts.items()])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
    a = onnxrt.InferenceSession(data).run(None, {"X": x})[0]
    b = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    return a, b


@pytest.mark.parametrize("stride,pad,dil,mult,k", [
    (1, 1, 1, 1, 3), (2, 1, 1, 1, 3), (1, 2, 2, 1, 3), (1, 0, 1, 2, 3), (2, 2, 1, 1, 5), (1, 1, 1, 3, 3),
])
def test_depthwise_matches_onnxruntime(stride, pad, dil, mult, k, depthwise_path):
    rng = np.random.default_rng(0)
    C = 40
    x = rng.standard_normal((2, C, 17, 13), dtype=np.float32)
    w = rng.standard_normal((C * mult, 1, k, k), dtype=np.float32)
    b = rng.standard_normal(C * mult, dtype=np.float32)
    a, r = _run_both("Conv", x, {"W": w, "B": b}, group=C, strides=[stride] * 2, pads=[pad] * 4,
                     dilations=[dil] * 2)
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("hw,k,pads,dil,bias", [
    ((56, 56), 7, [3, 3, 3, 3], 1, True),    # ConvNeXt: row cut into 14-column tiles
    ((7, 7), 7, [3, 3, 3, 3], 1, True),      # whole row as one tile
    ((23, 19), 3, [1, 1, 1, 1], 1, False),   # tiles that overrun the row (cropped)
    ((20, 33), 3, [0, 2, 1, 0], 2, True),    # asymmetric pads, dilation, odd width
    ((9, 40), 5, [2, 2, 2, 2], 1, True),     # 40 = 4 tiles of 10 (divisor tile)
])
def test_banded_depthwise_matches_onnxruntime(hw, k, pads, dil, bias, depthwise_path):
    rng = np.random.default_rng(3)
    C = 24
    x = rng.standard_normal((2, C) + hw, dtype=np.float32)
    consts = {"W": rng.standard_normal((C, 1, k, k), dtype=np.float32)}
    if bias:
        consts["B"] = rng.standard_normal(C, dtype=np.float32)
    a, r = _run_both("Conv", x, consts, group=C, pads=pads, dilations=[dil] * 2)
    assert a.shape == r.shape
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_banded_depthwise_runtime_weight_and_float64(depthwise_path):
    """A weight that is a graph input (no prepared bands) and float64 go through the same path."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((1, 6, 15, 30))
    w = rng.standard_normal((6, 1, 3, 3))
    kern = conv_kernel(_ctx({"group": 6, "pads": [1, 1, 1, 1]}, [None, None, None]))
    y = kern(x, w)
    assert y.dtype == np.float64
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    ref = sum(xp[:, :, i:i + 15, j:j + 30] * w[None, :, 0, i, j, None, None] for i in range(3) for j in range(3))
    np.testing.assert_allclose(y, ref, rtol=1e-10, atol=1e-10)
    w2 = rng.standard_normal((6, 1, 3, 3))
    np.testing.assert_allclose(kern(x, w2), sum(xp[:, :, i:i + 15, j:j + 30] * w2[None, :, 0, i, j, None, None]
                                                for i in range(3) for j in range(3)), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("op_type,attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])),
    ("MaxPool", dict(kernel_shape=[3, 2], strides=[1, 2], dilations=[2, 1], ceil_mode=1)),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[1, 1], pads=[1, 1, 1, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[1, 3], strides=[1, 1])),
])
def test_pools_match_onnxruntime(op_type, attrs, average_pool_path):
    x = np.random.default_rng(1).standard_normal((1, 5, 11, 12), dtype=np.float32)
    a, r = _run_both(op_type, x, {}, **attrs)
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op_type,attrs", [
    ("MaxPool", dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1])),
    ("MaxPool", dict(kernel_shape=[1, 3], pads=[0, 1, 0, 1])),
    ("MaxPool", dict(kernel_shape=[3, 1], ceil_mode=1)),
    ("MaxPool", dict(kernel_shape=[2, 2])),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[0, 1, 2, 1])),
    ("AveragePool", dict(kernel_shape=[3, 3], pads=[0, 1, 2, 1], count_include_pad=1)),
    ("AveragePool", dict(kernel_shape=[5, 5], pads=[2, 2, 2, 2])),
    ("AveragePool", dict(kernel_shape=[7, 7])),
])
@pytest.mark.parametrize("shape", [(2, 40, 7, 7), (1, 37, 40, 41)])  # the second spans blocks of channels
def test_stride_one_pools_over_the_flattened_image(op_type, attrs, shape, monkeypatch):
    from onnxrt.ops.pool import _Geometry
    if min(shape[2:]) < attrs["kernel_shape"][0] + 1:
        attrs = {**attrs, "kernel_shape": [2, 2]}
    assert _Geometry(op_type, shape[2:], attrs).flat
    monkeypatch.setattr(pool, "_MATRIX_MAX_POSITIONS_PER_TAP", 0)  # the tap passes (small images would average by the GEMM)
    x = np.random.default_rng(2).standard_normal(shape, dtype=np.float32)
    a, r = _run_both(op_type, x, {}, **attrs)
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("op_type,attrs,flat", [
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2]), True),  # SqueezeNet's
    ("MaxPool", dict(kernel_shape=[5, 4], strides=[3, 2]), True),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2]), True),
    # padded or ceil mode: tap_reduce
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), False),  # ResNet's
    ("MaxPool", dict(kernel_shape=[3, 3], strides=[2, 2], ceil_mode=1), False),
    ("AveragePool", dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 0, 1, 2], count_include_pad=1), False),
    ("MaxPool", dict(kernel_shape=[2, 2], strides=[2, 2]), False),  # windows that do not overlap
])
@pytest.mark.parametrize("shape", [(2, 3, 9, 10), (1, 47, 60, 61)])  # the second spans blocks of channels
def test_strided_pools_reduce_rows_over_the_flattened_image(op_type, attrs, flat, shape, monkeypatch):
    geo = pool._Geometry(op_type, shape[2:], attrs)
    assert geo.strided_flat is flat
    if shape[1] > 40:
        assert math.prod(shape[1:]) > pool._STRIDED_BLOCK
    monkeypatch.setattr(pool, "_MATRIX_MAX_POSITIONS_PER_TAP", 0)  # the tap passes (small images would average by the GEMM)
    x = np.random.default_rng(4).standard_normal(shape, dtype=np.float32)
    a, r = _run_both(op_type, x, {}, **attrs)
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)


def test_strided_max_pool_of_integers_and_nan():
    x = np.random.default_rng(5).integers(-128, 127, (1, 3, 9, 8)).astype(np.int8)
    node = helper.make_node("MaxPool", ["X"], ["Y"], kernel_shape=[3, 3], strides=[2, 2])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.INT8, x.shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.INT8, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
    expected = np.max([x[:, :, i:i + 7:2, j:j + 5:2] for i in range(3) for j in range(3)], axis=0)
    np.testing.assert_array_equal(onnxrt.InferenceSession(data).run(None, {"X": x})[0], expected)
    f = np.random.default_rng(6).standard_normal((1, 2, 7, 7)).astype(np.float32)  # unpadded: strided_reduce
    f[0, 1, 2, 2] = np.nan  # read by the four windows around it
    y = _run_both("MaxPool", f, {}, kernel_shape=[3, 3], strides=[2, 2])[0]
    assert np.isnan(y[0, 1, :2, :2]).all() and not np.isnan(y[0, 0]).any() and np.isnan(y).sum() == 4


def test_stride_one_max_pool_of_integers():
    x = np.random.default_rng(3).integers(-128, 127, (1, 3, 9, 8)).astype(np.int8)
    node = helper.make_node("MaxPool", ["X"], ["Y"], kernel_shape=[3, 3], pads=[1, 1, 1, 1])
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("X", TensorProto.INT8, x.shape)],
                              [helper.make_tensor_value_info("Y", TensorProto.INT8, None)])
    data = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-128)
    expected = np.max([xp[:, :, i:i + 9, j:j + 8] for i in range(3) for j in range(3)], axis=0)
    np.testing.assert_array_equal(onnxrt.InferenceSession(data).run(None, {"X": x})[0], expected)


def _ctx(attrs, consts):
    return KernelContext(op_type="FusedConv", domain="com.microsoft", name="", opset=1, since_version=1,
                         attrs=attrs, num_inputs=len(consts), num_outputs=1, input_names=[""] * len(consts),
                         output_names=["Y"], const_inputs=consts, input_types=[None] * len(consts),
                         output_types=[None], num_captured=0, session=None)


# depthwise cases: banded (stride 1; 30 wide is cut into tiles past the row's end), strided
# im2col, channel multiplier 2
@pytest.mark.parametrize("group,k,stride,width,cin", [(1, 3, 1, 9, 8), (1, 1, 1, 9, 8), (4, 3, 1, 9, 8),
                                                      (8, 3, 1, 9, 8), (8, 3, 1, 30, 8), (8, 3, 2, 9, 8),
                                                      (4, 3, 1, 9, 4)])
def test_conv_kernel_epilogue(group, k, stride, width, cin, depthwise_path):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, cin, 9, width), dtype=np.float32)
    w = rng.standard_normal((8, cin // group, k, k), dtype=np.float32)
    b = rng.standard_normal(8, dtype=np.float32)
    out_sp = ((9 - 1) // stride + 1, (width - 1) // stride + 1)
    z = rng.standard_normal((2, 8) + out_sp, dtype=np.float32)
    attrs = {"group": group, "pads": [k // 2] * 4, "strides": [stride] * 2}
    plain = conv_kernel(_ctx(attrs, [None, w, b]))(x, w, b)
    fused = conv_kernel(_ctx(attrs, [None, w, b]), lambda y: np.maximum(y, 0, out=y))(x, w, b, z)
    np.testing.assert_allclose(fused, np.maximum(plain + z, 0), rtol=1e-5, atol=1e-5)


def test_prepared_elementwise_falls_back_on_unexpected_dtype():
    from onnxrt.ops import registry
    _, factory = registry.lookup("", "Add", 17)
    import onnx_ir as ir

    ctx = _ctx({}, [None, None])
    ctx.input_types = [ir.TensorType(ir.DataType.FLOAT)] * 2  # shape inference knew the inputs were float32
    add = factory(ctx)
    f = np.ones(3, np.float32)
    assert add(f, f).dtype == np.float32
    assert add(f.astype(np.float64), f.astype(np.float64)).dtype == np.float64  # checked path
    with pytest.raises(TypeError, match="same element type"):
        add(f, f.astype(np.float64))
    with pytest.raises(ValueError, match="broadcast"):
        add(f, np.ones(4, np.float32))
    assert isinstance(add(np.float32(1) * np.ones((), np.float32), np.ones((), np.float32)), np.ndarray)


def test_banded_depthwise_shares_buffers_across_shapes(depthwise_path):
    """Banded depthwise convs of different shapes share one padded-image, column and output buffer
    per thread: a larger conv leaves large values in them, and the next, smaller one (other pads,
    bias or not) must still read zeros around its image and ones in its bias column; a padded
    image's border is only left unwritten after a conv of the same layout."""
    rng = np.random.default_rng(5)

    def run(C, hw, k, pads, bias, scale):
        x = (rng.standard_normal((1, C) + hw) * scale).astype(np.float32)
        w = rng.standard_normal((C, 1, k, k)).astype(np.float32)
        b = rng.standard_normal(C).astype(np.float32) if bias else None
        kern = conv_kernel(_ctx({"group": C, "pads": pads}, [None, w, b]))
        y = kern(x, w, b)
        xp = np.pad(x, ((0, 0), (0, 0), (pads[0], pads[2]), (pads[1], pads[3])))
        oh, ow = y.shape[2:]
        ref = sum(xp[:, :, i:i + oh, j:j + ow] * w[None, :, 0, i, j, None, None] for i in range(k) for j in range(k))
        if b is not None:
            ref = ref + b[None, :, None, None]
        np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-3 * scale)

    run(48, (40, 40), 5, [2, 2, 2, 2], True, 1e3)   # fills the buffers with large values
    run(16, (9, 13), 3, [1, 0, 0, 2], False, 1.0)   # asymmetric pads: border zeroed where it lies now
    run(32, (12, 12), 3, [1, 1, 1, 1], True, 1.0)   # bias column set again
    # the zero border is written when the buffer's last user had another layout, not after the same
    run(16, (9, 13), 3, [1, 0, 0, 2], False, 1e3)
    run(16, (9, 13), 3, [1, 0, 0, 2], False, 1.0)
    run(16, (10, 13), 3, [0, 0, 1, 2], False, 1.0)  # same padded size, the image one row lower


@pytest.mark.parametrize("hw,k,strides,pads,dil", [
    ((14, 14), 3, [1, 1], [1, 1, 1, 1], [1, 1]),   # MobileNetV2's 14x14 stage: width and channels merge
    ((6, 40), 5, [2, 1], [2, 2, 2, 2], [1, 1]),    # PP-OCR's strips, stride along the height only
    ((15, 13), 3, [2, 2], [1, 0, 0, 1], [1, 1]),   # strided along the width: one einsum axis per axis
    ((12, 11), 3, [1, 2], [2, 2, 2, 2], [2, 2]),   # dilated
    # short maps, wide rows: each output row only over the kernel rows inside the image
    ((2, 96), 5, [1, 1], [2, 2, 2, 2], [1, 1]),    # PP-OCR's recognizer: 40% of the rows inside
    ((3, 50), 5, [1, 1], [2, 1, 2, 3], [1, 1]),
    ((3, 50), 3, [1, 1], [2, 1, 4, 1], [2, 1]),    # dilated
    ((3, 50), 3, [1, 1], [1, 1, 4, 1], [1, 1]),    # the last rows read nothing but padding
    ((4, 50), 5, [2, 1], [2, 2, 2, 2], [1, 1]),
])
def test_channels_last_depthwise_takes_either_layout(hw, k, strides, pads, dil):
    """The channels-last path is chosen for these shapes by default, and gives onnxruntime's output
    from a channel-first input and from a channels-last one (a transposed view, as a Transpose of an
    NHWC input may hand it on), with FusedConv's residual and activation applied after the bias."""
    rng = np.random.default_rng(6)
    C = 24
    x = rng.standard_normal((2, C) + hw, dtype=np.float32)
    w = rng.standard_normal((C, 1, k, k), dtype=np.float32)
    b = rng.standard_normal(C, dtype=np.float32)
    attrs = dict(group=C, strides=strides, pads=pads, dilations=dil)
    geo = conv._ConvGeometry("Conv", x.shape, w.shape, attrs)
    assert geo.channels_last.from_channels_first and geo.channels_last.from_channels_last
    ref = _run_both("Conv", x, {"W": w, "B": b}, **attrs)[1]
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    assert conv._is_channels_last(x_last[0]) and not conv._is_channels_last(x[0])
    kern = conv_kernel(_ctx(attrs, [None, w, b]))
    for xin in (x, x_last):
        np.testing.assert_allclose(kern(xin, w, b), ref, rtol=1e-4, atol=1e-4)
    z = rng.standard_normal(ref.shape, dtype=np.float32)
    relu = conv_kernel(_ctx(attrs, [None, w, b]), lambda y: np.maximum(y, 0, out=y))
    for xin in (x, x_last):
        np.testing.assert_allclose(relu(xin, w, b), np.maximum(ref, 0), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(relu(xin, w, b, z), np.maximum(ref + z, 0), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("run", [24, 120, 1 << 20])  # one pixel; 5 columns (13 = 5 + 5 + 3); whole rows
@pytest.mark.parametrize("hw,k,pads,dil", [
    ((9, 13), 3, [1, 1, 1, 1], [1, 1]),
    ((6, 13), 5, [2, 3, 2, 5], [1, 2]),  # asymmetric pads, dilated along the width
    ((2, 13), 5, [2, 2, 2, 2], [1, 1]),  # short map: row groups
])
def test_channels_last_depthwise_column_blocks(monkeypatch, run, hw, k, pads, dil):
    """The stride-1 einsum over blocks of output columns (the weights repeated per column of a
    block), with a shorter last block where the width has no divisor near the run, gives
    onnxruntime's output."""
    monkeypatch.setattr(conv, "_CHANNELS_LAST_RUN", run)
    rng = np.random.default_rng(9)
    C = 24
    x = rng.standard_normal((1, C) + hw, dtype=np.float32)
    w = rng.standard_normal((C, 1, k, k), dtype=np.float32)
    b = rng.standard_normal(C, dtype=np.float32)
    attrs = dict(group=C, pads=pads, dilations=dil)
    geo = conv._ConvGeometry("Conv", x.shape, w.shape, attrs)
    assert geo.channels_last.takes(False)
    assert geo.channels_last.block == {24: 1, 120: 5, 1 << 20: 13}[run]
    a, r = _run_both("Conv", x, {"W": w, "B": b}, **attrs)
    np.testing.assert_allclose(a, r, rtol=1e-4, atol=1e-4)


def test_column_block_prefers_a_divisor_near_the_run(monkeypatch):
    monkeypatch.setattr(conv, "_CHANNELS_LAST_RUN", 768)
    assert conv._column_block(56, 96) == 8       # 8 * 96 = 768
    assert conv._column_block(112, 32) == 28     # 24 wanted: 28 divides 112
    assert conv._column_block(7, 768) == 1       # the channels alone make the run
    assert conv._column_block(7, 48) == 7        # 16 wanted, the whole row is 7 columns
    assert conv._column_block(101, 32) == 24     # no divisor within 2x: 4 blocks of 24 columns, then 5
    assert conv._column_block(53, 8) == 53       # 96 wanted: at most the row


def _inverted_residual(n: int, dw_stride: int, extra_reader: bool, expand_k: int = 1, hw: int = 14) -> bytes:
    """MobileNetV2's block: 1x1 expand + Relu, 3x3 depthwise + Relu, 1x1 project; with
    ``extra_reader`` the expanded value is also read by a GlobalAveragePool (a second graph output);
    with ``expand_k`` 3 the expansion is a padded 3x3 conv (MobileNetV2's stem)."""
    rng = np.random.default_rng(7)
    C, E = 8, 32
    inits = [numpy_helper.from_array(rng.standard_normal(shape, dtype=np.float32), name) for name, shape in
             [("W1", (E, C, expand_k, expand_k)), ("B1", (E,)), ("W2", (E, 1, 3, 3)), ("B2", (E,)),
              ("W3", (C, E, 1, 1))]]
    nodes = [helper.make_node("Conv", ["X", "W1", "B1"], ["c1"], pads=[expand_k // 2] * 4),
             helper.make_node("Relu", ["c1"], ["a1"]),
             helper.make_node("Conv", ["a1", "W2", "B2"], ["c2"], group=E, pads=[1] * 4, strides=[dw_stride] * 2),
             helper.make_node("Relu", ["c2"], ["a2"]), helper.make_node("Conv", ["a2", "W3"], ["Y"])]
    outputs = [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)]
    if extra_reader:
        nodes.append(helper.make_node("GlobalAveragePool", ["a1"], ["G"]))
        outputs.append(helper.make_tensor_value_info("G", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n, C, hw, hw])],
                              outputs, inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def _output_layouts(sess, feeds) -> list[bool]:
    """Per planned step, whether its first output came out channels-last."""
    layouts = []

    def recording(kernel):
        def record(*args):
            result = kernel(*args)
            layouts.append(result.ndim == 4 and conv._is_channels_last(result[0]))
            return result
        return record

    for step in sess._plan.steps:
        step.kernel = recording(step.kernel)
        if step.donate is not None:  # a step running in place calls its variant instead
            step.donate = (step.donate[0], recording(step.donate[1]))
    sess.run(None, feeds)
    return layouts


@pytest.mark.parametrize("n,dw_stride,expand_k,hw", [(1, 1, 1, 14), (2, 1, 1, 14), (1, 2, 1, 14), (2, 1, 3, 20)])
@pytest.mark.parametrize("level", ["ORT_DISABLE_ALL", "ORT_ENABLE_ALL"])
def test_pointwise_depthwise_chain_hands_on_channels_last(n, dw_stride, expand_k, hw, level):
    """1x1 (or tiled im2col 3x3) -> depthwise -> 1x1: the expand conv writes its output
    channels-last (the GEMM's transposed form), the depthwise conv reads and writes that layout and
    the project conv reads it as a transposed operand; results match onnxruntime, the graph output
    and a fetched intermediate value come back C-contiguous."""
    data = _inverted_residual(n, dw_stride, extra_reader=False, expand_k=expand_k, hw=hw)
    x = np.random.default_rng(8).standard_normal((n, 8, hw, hw), dtype=np.float32)
    options = onnxrt.SessionOptions()
    options.graph_optimization_level = getattr(onnxrt.GraphOptimizationLevel, level)
    sess = onnxrt.InferenceSession(data, options)
    ref = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    y = sess.run(None, {"X": x})[0]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    assert y.flags.c_contiguous
    convs = [i for i, step in enumerate(sess._plan.steps) if step.op_type in ("Conv", "FusedConv")]
    layouts = _output_layouts(sess, {"X": x})
    # unfused, every conv's reader is a Relu: nothing changes layout
    assert [layouts[i] for i in convs] == ([False] * 3 if level == "ORT_DISABLE_ALL" else [True, True, False])
    expanded = sess._plan.steps[convs[0]].node.outputs[0].name
    y_again, fetched = onnxrt.InferenceSession(data, options).run(["Y", expanded], {"X": x})
    np.testing.assert_allclose(y_again, ref, rtol=1e-4, atol=1e-4)
    assert fetched.flags.c_contiguous and fetched.shape == (n, 32, hw, hw)
    w1, b1 = (numpy_helper.to_array(t) for t in onnx.load_from_string(data).graph.initializer[:2])
    p = expand_k // 2
    xp = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    expected = sum(np.einsum("ec,nchw->nehw", w1[:, :, i, j], xp[:, :, i:i + hw, j:j + hw])
                   for i in range(expand_k) for j in range(expand_k)) + b1[:, None, None]
    if level != "ORT_DISABLE_ALL":  # Conv + Relu fused into one FusedConv
        expected = np.maximum(expected, 0)
    np.testing.assert_allclose(fetched, expected, rtol=1e-4, atol=1e-4)


def _conv_then_permute(group: int, k: int, stride: int, perm: list[int], C: int = 16, hw: int = 28) -> bytes:
    """ConvNeXt's pattern: a conv (depthwise 7x7, or the 4x4 stride-4 stem) -> Transpose(perm) ->
    LayerNormalization over the last axis."""
    rng = np.random.default_rng(11)
    M = C if group > 1 else 24
    pad = k // 2 if stride == 1 else 0
    conv_out = (1, M, (hw + 2 * pad - k) // stride + 1, (hw + 2 * pad - k) // stride + 1)
    inits = [numpy_helper.from_array(rng.standard_normal((M, C // group, k, k), dtype=np.float32), "W"),
             numpy_helper.from_array(rng.standard_normal((M,), dtype=np.float32), "B"),
             numpy_helper.from_array(rng.standard_normal((conv_out[perm[-1]],), dtype=np.float32), "S")]
    nodes = [helper.make_node("Conv", ["X", "W", "B"], ["c"], group=group, pads=[pad] * 4, strides=[stride] * 2),
             helper.make_node("Transpose", ["c"], ["t"], perm=perm),
             helper.make_node("LayerNormalization", ["t", "S"], ["Y"], axis=-1)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, C, hw, hw])],
                              [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


@pytest.mark.parametrize("group,k,stride,perm,hw,handed_on", [
    (16, 7, 1, [0, 2, 3, 1], 28, True),  # ConvNeXt's depthwise conv -> permute: channels-last, whatever its size
    (16, 3, 1, [0, 2, 3, 1], 28, True),
    (1, 4, 4, [0, 2, 3, 1], 56, True),  # the stem: the tiled im2col GEMM run transposed
    (1, 4, 4, [0, 2, 3, 1], 28, False),  # a small one gathers its columns instead: no transposed form
    (1, 1, 1, [0, 2, 3, 1], 28, True),
    (16, 7, 1, [0, 3, 2, 1], 28, False),  # another permutation gains nothing from it
    (16, 7, 1, [0, 1, 3, 2], 28, False),
])
def test_conv_read_by_a_permute_to_channels_last_writes_that_layout(group, k, stride, perm, hw, handed_on):
    """A conv whose output a Transpose to (N, H, W, C) reads writes it channels-last, so that the
    Transpose hands on a C-contiguous array and the LayerNormalization reads it as one; results
    match onnxruntime either way."""
    data = _conv_then_permute(group, k, stride, perm, hw=hw)
    x = np.random.default_rng(12).standard_normal((1, 16, hw, hw), dtype=np.float32)
    sess = onnxrt.InferenceSession(data)
    ref = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    np.testing.assert_allclose(sess.run(None, {"X": x})[0], ref, rtol=1e-4, atol=1e-4)
    ops = [step.op_type for step in sess._plan.steps]
    assert ops == ["Conv", "Transpose", "LayerNormalization"]
    transposed = []
    transpose_step = sess._plan.steps[1]
    kernel = transpose_step.kernel
    transpose_step.kernel = lambda *args: transposed.append(kernel(*args)) or transposed[-1]
    layouts = _output_layouts(sess, {"X": x})
    assert layouts[0] is handed_on
    assert transposed[-1].flags.c_contiguous is handed_on


def test_channels_last_only_when_every_reader_takes_it():
    """The expanded value is also read by a pool: it stays channel-first (the depthwise conv still
    goes channels-last on its own and hands its output to the project conv in that layout)."""
    data = _inverted_residual(1, 1, extra_reader=True)
    x = np.random.default_rng(9).standard_normal((1, 8, 14, 14), dtype=np.float32)
    sess = onnxrt.InferenceSession(data)
    refs = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x})
    for got, ref in zip(sess.run(None, {"X": x}), refs):
        np.testing.assert_allclose(got, ref, rtol=1e-4, atol=1e-4)
    convs = [i for i, step in enumerate(sess._plan.steps) if step.op_type in ("Conv", "FusedConv")]
    layouts = _output_layouts(sess, {"X": x})
    assert [layouts[i] for i in convs] == [False, True, False]


def _expand_depthwise(act: list, n: int = 1, E: int = 32, pads=(1, 1, 1, 1), stride: int = 1, bias: bool = True,
                      w1_scale: float = 1.0, w1_input: bool = False) -> bytes:
    """1x1 expand (8 -> E) -> ``act`` (op type, attributes, constant inputs) -> 3x3 depthwise
    (``pads``, ``stride``) -> Relu -> 1x1 project; with ``w1_input`` the expand weight is a graph input."""
    rng = np.random.default_rng(11)
    arrays = {"W1": rng.standard_normal((E, 8, 1, 1), dtype=np.float32) * w1_scale,
              "W2": rng.standard_normal((E, 1, 3, 3), dtype=np.float32),
              "B2": rng.standard_normal(E, dtype=np.float32), "W3": rng.standard_normal((8, E, 1, 1), dtype=np.float32)}
    if bias:
        arrays["B1"] = rng.standard_normal(E, dtype=np.float32)
    op_type, attrs, consts = act
    arrays.update(consts)
    nodes = [helper.make_node("Conv", ["X", "W1", "B1"] if bias else ["X", "W1"], ["c1"]),
             helper.make_node(op_type, ["c1", *consts], ["a1"], **attrs),
             helper.make_node("Conv", ["a1", "W2", "B2"], ["c2"], group=E, pads=list(pads), strides=[stride] * 2),
             helper.make_node("Relu", ["c2"], ["a2"]), helper.make_node("Conv", ["a2", "W3"], ["Y"])]
    inputs = [helper.make_tensor_value_info("X", TensorProto.FLOAT, [n, 8, 15, 15])]
    if w1_input:
        inputs.append(helper.make_tensor_value_info("W1", TensorProto.FLOAT, [E, 8, 1, 1]))
        del arrays["W1"]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(a, name) for name, a in arrays.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=9).SerializeToString()


def test_expand_conv_with_weights_given_at_run_time():
    """The zero border is planned on the first run's weights; an infinite weight given later (0 * inf
    would make the border NaN) runs the plain channels-last path."""
    data = _expand_depthwise(_RELU, w1_input=True)
    sess = onnxrt.InferenceSession(data)
    ref = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    x = np.random.default_rng(15).standard_normal((1, 8, 15, 15), dtype=np.float32)
    w = np.random.default_rng(16).standard_normal((32, 8, 1, 1), dtype=np.float32)
    for weight in (w, np.where(np.arange(w.size).reshape(w.shape) == 3, np.inf, w).astype(np.float32), w):
        feeds = {"X": x, "W1": weight}
        np.testing.assert_allclose(sess.run(None, feeds)[0], ref.run(None, feeds)[0], rtol=1e-4, atol=1e-4)


_RELU = ("Relu", {}, {})
_CLIP6 = ("Clip", {}, {"lo": np.array(0, np.float32), "hi": np.array(6, np.float32)})


@pytest.mark.parametrize("act,n,E,pads,stride,bias,w1_scale,bordered", [
    (_RELU, 1, 32, (1, 1, 1, 1), 1, True, 1.0, True),
    (_CLIP6, 2, 32, (0, 0, 1, 1), 2, True, 1.0, True),  # TF-style "same" padding, batch 2
    (("LeakyRelu", {"alpha": 0.1}, {}), 1, 32, (1, 1, 1, 1), 1, False, 1.0, True),  # no bias at all
    (("Clip", {}, {"lo": np.array(1, np.float32), "hi": np.array(6, np.float32)}), 1, 32, (1, 1, 1, 1), 1, True,
     1.0, False),  # the activation of a zero is 1: the border would not stay zero
    (("Sigmoid", {}, {}), 1, 32, (1, 1, 1, 1), 1, True, 1.0, False),
    (_RELU, 1, 8, (1, 1, 1, 1), 1, True, 1.0, False),  # no expansion: the bias is added after the GEMM
    (_RELU, 1, 32, (1, 1, 1, 1), 1, True, np.inf, False),  # 0 * inf would be NaN in the border
])
@pytest.mark.filterwarnings("ignore:invalid value encountered")  # the infinite weight's model itself
def test_expand_conv_writes_inside_the_depthwise_convs_zero_border(act, n, E, pads, stride, bias, w1_scale, bordered):
    """A 1x1 conv read only by depthwise convs writes its channels-last output as the interior of a
    zero-bordered image of their padding, which they read as their padded input without a copy;
    only where its border stays zero (bias in the GEMM, an activation keeping 0, finite weights)."""
    data = _expand_depthwise(act, n, E, pads, stride, bias, w1_scale)
    x = np.random.default_rng(12).standard_normal((n, 8, 15, 15), dtype=np.float32)
    sess = onnxrt.InferenceSession(data)
    ref = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"]).run(None, {"X": x})[0]
    expand = sess._plan.steps[0]
    assert expand.op_type == "FusedConv"
    made = []
    kernel = expand.kernel
    expand.kernel = lambda *args: made.append(kernel(*args)) or made[-1]
    y = sess.run(None, {"X": x})[0]
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)
    base = made[0].base
    assert (type(base) is np.ndarray and conv._ZERO_BORDERED.get(id(base)) is base) is bordered
    assert conv._is_channels_last(made[0][0])
    if bordered:  # the border around every image is zero, the interior is the output
        top, left, bottom, right = pads
        assert base.shape == (n, 15 + top + bottom, 15 + left + right, E)
        inner = np.zeros(base.shape, bool)
        inner[:, top:top + 15, left:left + 15] = True
        assert not base[~inner].any()
        np.testing.assert_array_equal(base[:, top:top + 15, left:left + 15], made[0].transpose(0, 2, 3, 1))


@pytest.mark.parametrize("shape", [(29, 200, 24), (7, 5000, 3), (3, 4, 5)])
def test_channels_last_image_copied_out_channel_first_by_row_blocks(shape):
    image = np.random.default_rng(13).standard_normal(shape, dtype=np.float32)
    out = np.empty((shape[2],) + shape[:2], np.float32)
    conv._to_channels_first(image, out)
    np.testing.assert_array_equal(out, image.transpose(2, 0, 1))


def test_depthwise_of_a_large_channels_last_image_gives_channel_first():
    """PP-OCR's detector: its stem hands a 16x320x320 image on channels-last to a 3x3 depthwise conv
    whose output goes back channel-first (copied out by blocks of rows)."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((1, 16, 61, 130), dtype=np.float32)
    w = rng.standard_normal((16, 1, 3, 3), dtype=np.float32)
    b = rng.standard_normal(16, dtype=np.float32)
    attrs = dict(group=16, pads=[1, 1, 1, 1])
    ref = _run_both("Conv", x, {"W": w, "B": b}, **attrs)[1]
    x_last = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    y = conv_kernel(_ctx(attrs, [None, w, b]))(x_last, w, b)
    assert y.flags.c_contiguous
    np.testing.assert_allclose(y, ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape,attrs,by_matrix", [
    ((1, 1024, 7, 7), dict(kernel_shape=[3, 3], pads=[1, 1, 1, 1]), True),  # Inception-v2's
    ((1, 272, 14, 14), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), True),  # ShuffleNet's
    ((1, 136, 28, 28), dict(kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1]), False),
    ((1, 480, 3, 80), dict(kernel_shape=[3, 2], strides=[3, 2]), False),  # PP-OCR's recognizer
])
def test_small_images_average_by_one_gemm(shape, attrs, by_matrix):
    # the averaging matrix against the tap passes: prod(in_sp) multiply-adds per output, taken while
    # that is at most _MATRIX_MAX_POSITIONS_PER_TAP per window tap
    assert pool._Geometry("AveragePool", shape[2:], attrs).by_matrix is by_matrix
    x = np.random.default_rng(7).standard_normal(shape, dtype=np.float32)
    a, r = _run_both("AveragePool", x, {}, **attrs)
    np.testing.assert_allclose(a, r, rtol=1e-5, atol=1e-6)
