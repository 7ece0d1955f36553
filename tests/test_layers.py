"""Every layer, on every backend: forward against numpy float64, backward against central differences."""

from __future__ import annotations

import math

import numpy as np
import pytest

import xbp
from tests.harness import check_backward, host, relative_error
from xbp.layers import AddLayer, Affine, MulLayer, Relu, Sigmoid, SoftmaxWithLoss


def ref_softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_mul_and_add_on_python_numbers_give_the_books_apple_numbers():
    mul_apple, mul_tax = MulLayer(), MulLayer()
    price = mul_tax.forward(mul_apple.forward(100, 2), 1.1)
    dapple_price, dtax = mul_tax.backward(1)
    dapple, dapple_num = mul_apple.backward(dapple_price)
    assert (price, dapple, dapple_num, dtax) == (pytest.approx(220.0, abs=1e-12), 2.2,
                                                 pytest.approx(110.0, abs=1e-12), 200)
    assert round(price) == 220 and f"{int(price)}" == "220"  # the book prints int(price)
    add = AddLayer()
    assert add.forward(3, 4) == 7
    assert add.backward(2.5) == (2.5, 2.5)


def test_backward_without_dout_is_backward_of_one(xp):
    """The book starts backpropagation with `backward()` on the last node: dout defaults to 1."""
    x, y = xbp.asarray(host(1, 3, 4)), xbp.asarray(host(2, 3, 4))
    mul, add, sigmoid, relu = MulLayer(), AddLayer(), Sigmoid(), Relu()
    mul.forward(x, y), add.forward(x, y), sigmoid.forward(x), relu.forward(x)
    dx, dy = mul.backward()
    assert relative_error(dx, xbp.to_cpu(y)) == 0 and relative_error(dy, xbp.to_cpu(x)) == 0
    assert add.backward() == (1, 1)
    loss = SoftmaxWithLoss()
    loss.forward(x, xbp.asarray([0, 3, 1]))
    for layer in (sigmoid, relu, loss):
        assert relative_error(layer.backward(), xbp.to_cpu(layer.backward(1))) == 0


def test_add_passes_dout_on_unchanged_in_its_dtype(xp):
    dout = xbp.asarray(np.array([[1, -2], [3, 4]]))  # integers stay integers: nothing is divided
    for d in AddLayer().backward(dout):
        assert d.dtype == dout.dtype
        np.testing.assert_array_equal(xbp.to_cpu(d), [[1, -2], [3, 4]])


@pytest.mark.parametrize("layer_class", [MulLayer, AddLayer])
def test_mul_and_add_on_arrays(xp, layer_class):
    a, b, dout = (xbp.asarray(host(s, 3, 4)) for s in (1, 2, 3))
    layer = layer_class()
    expected = host(1, 3, 4) * host(2, 3, 4) if layer_class is MulLayer else host(1, 3, 4) + host(2, 3, 4)
    out = layer.forward(a, b)
    assert relative_error(out, expected) < 1e-12
    check_backward(layer.forward, layer.backward, [a, b], dout)


def test_relu(xp):
    x_host = host(4, 5, 6)
    x_host[np.abs(x_host) < 0.01] = 0.5  # keep away from the kink, where the derivative jumps
    x, dout = xbp.asarray(x_host), xbp.asarray(host(5, 5, 6))
    layer = Relu()
    assert relative_error(layer.forward(x), np.maximum(x_host, 0)) == 0
    check_backward(layer.forward, layer.backward, [x], dout)


def test_relu_passes_no_gradient_at_zero(xp):
    """The book's mask is x <= 0: at the kink itself the gradient is 0."""
    layer = Relu()
    layer.forward(xbp.asarray([[-1.0, 0.0, 2.0]]))
    assert xbp.to_cpu(layer.backward(xbp.asarray([[5.0, 5.0, 5.0]]))).tolist() == [[0.0, 0.0, 5.0]]


def test_sigmoid(xp):
    x_host = host(6, 4, 3, low=-6, high=6)
    x, dout = xbp.asarray(x_host), xbp.asarray(host(7, 4, 3))
    layer = Sigmoid()
    assert relative_error(layer.forward(x), 1 / (1 + np.exp(-x_host))) < 1e-14
    check_backward(layer.forward, layer.backward, [x], dout)


def test_affine_with_nd_input(xp):
    x_host, W_host, b_host = host(8, 4, 2, 3), host(9, 6, 5), host(10, 5)
    x, W, b = (xbp.asarray(a) for a in (x_host, W_host, b_host))
    dout = xbp.asarray(host(11, 4, 5))
    layer = Affine(W, b)
    out = layer.forward(x)
    assert relative_error(out, x_host.reshape(4, 6) @ W_host + b_host) < 1e-13
    dx = layer.backward(dout)
    assert tuple(dx.shape) == (4, 2, 3)

    def forward(x_, W_, b_):
        layer.W, layer.b = W_, b_
        return layer.forward(x_)

    def backward(d):
        return layer.backward(d), layer.dW, layer.db

    check_backward(forward, backward, [x, W, b], dout)


def test_affine_can_skip_the_input_gradient(xp):
    W, b = xbp.asarray(host(1, 3, 2)), xbp.asarray(host(2, 2))
    x, dout = xbp.asarray(host(3, 4, 3)), xbp.asarray(host(4, 4, 2))
    full, lean = Affine(W, b), Affine(W, b)
    full.forward(x), lean.forward(x)
    full.backward(dout)
    assert lean.backward(dout, need_dx=False) is None
    assert relative_error(lean.dW, full.dW) == 0 and relative_error(lean.db, full.db) == 0


@pytest.mark.parametrize("one_hot_labels", [False, True], ids=["labels", "one-hot"])
def test_softmax_with_loss(xp, one_hot_labels):
    x_host = host(12, 5, 4, low=-3, high=3)
    labels = np.array([0, 3, 1, 2, 3])
    t_host = np.eye(4)[labels] if one_hot_labels else labels
    x, t = xbp.asarray(x_host), xbp.asarray(t_host)
    layer = SoftmaxWithLoss()
    loss = layer.forward(x, t)
    expected = -np.mean(np.log(ref_softmax(x_host)[np.arange(5), labels]))
    assert abs(float(loss) - expected) < 1e-13
    assert relative_error(layer.y, ref_softmax(x_host)) < 1e-13
    dout = xbp.asarray(2.5, dtype=xp.float64)
    check_backward(lambda x_: layer.forward(x_, t), layer.backward, [x], dout)
    layer.forward(x, t)
    assert relative_error(layer.backward(dout), 2.5 * (ref_softmax(x_host) - np.eye(4)[labels]) / 5) < 1e-13


def test_softmax_with_loss_is_stable_for_huge_logits(xp):
    layer = SoftmaxWithLoss()
    x = xbp.asarray([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]], dtype="float32")
    loss = layer.forward(x, xbp.asarray([1, 1]))
    assert float(loss) == pytest.approx(1e4, rel=1e-6)  # (2e4 + 0) / 2
    equal = layer.forward(xbp.asarray(np.full((3, 7), 5.0)), xbp.asarray([0, 3, 6]))
    assert float(equal) == pytest.approx(math.log(7), rel=1e-12)


def test_sigmoid_is_finite_and_silent_for_huge_inputs(xp):
    out = Sigmoid().forward(xbp.asarray([-1e4, 0.0, 1e4], dtype="float32"))
    assert xbp.to_cpu(out).tolist() == [0.0, 0.5, 1.0]


def test_nan_in_gives_nan_out(xp):
    nan_row = xbp.asarray([[float("nan"), 1.0, 2.0]])
    for layer in (Relu(), Sigmoid()):
        assert math.isnan(xbp.to_cpu(layer.forward(nan_row))[0, 0])
    loss = SoftmaxWithLoss().forward(nan_row, xbp.asarray([1]))
    assert math.isnan(float(loss))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_layers_preserve_dtype(xp, dtype):
    x = xbp.asarray(host(1, 4, 3), dtype=dtype)
    W, b = xbp.asarray(host(2, 3, 2), dtype=dtype), xbp.asarray(host(3, 2), dtype=dtype)
    for layer in (Relu(), Sigmoid()):
        assert layer.forward(x).dtype == x.dtype and layer.backward(x).dtype == x.dtype
    affine = Affine(W, b)
    y = affine.forward(x)
    assert y.dtype == x.dtype and affine.backward(y).dtype == x.dtype
    assert affine.dW.dtype == x.dtype and affine.db.dtype == x.dtype
    loss_layer = SoftmaxWithLoss()
    assert loss_layer.forward(y, xbp.asarray([0, 1, 1, 0])).dtype == x.dtype
    assert loss_layer.backward().dtype == x.dtype


def test_layers_keep_arrays_on_their_device():
    with xbp.using_backend("array_api_strict", device="device1"):
        dev = xbp.get_device()
        x, W, b = xbp.asarray(host(1, 4, 3)), xbp.asarray(host(2, 3, 2)), xbp.asarray(host(3, 2))
        t = xbp.asarray([0, 1, 1, 0])
    affine, relu, loss_layer = Affine(W, b), Relu(), SoftmaxWithLoss()
    loss_layer.forward(relu.forward(affine.forward(x)), t)
    dx = affine.backward(relu.backward(loss_layer.backward()))
    assert all(xbp.device(a) == dev for a in (dx, affine.dW, affine.db, loss_layer.y))


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([0, 1, 10], r"label 10 is out of range: class labels must be in \[0, 10\)"),
        ([0, -1, 2], r"label -1 is out of range"),
        ([0.0, 1.0, 2.0], r"^1-D labels must be integer class indices, got dtype .*float.*; convert them "
                          r"with xp\.astype\(t, xp\.int64\), or pass one-hot rows \(N, C\)\.$"),
        ([[[0]], [[1]], [[2]]], r"^labels must be \(N,\) class indices or \(N, C\) one-hot rows, got shape "
                                r"\(3, 1, 1\)\.$"),
        ([0, 1], r"batch size mismatch: logits have 3 rows but labels have 2"),
    ],
)
def test_softmax_with_loss_rejects_bad_labels(xp, labels, message):
    x = xbp.asarray(host(1, 3, 10))
    with pytest.raises(ValueError, match=message):
        SoftmaxWithLoss().forward(x, xbp.asarray(labels))


def test_softmax_with_loss_rejects_one_hot_of_the_wrong_shape(xp):
    x = xbp.asarray(host(1, 3, 10))
    with pytest.raises(ValueError, match=r"one-hot labels have shape \(3, 9\) .* give 10 columns"):
        SoftmaxWithLoss().forward(x, xbp.asarray(np.eye(9)[:3]))


def test_affine_rejects_a_shape_mismatch(xp):
    layer = Affine(xbp.asarray(host(1, 5, 2)), xbp.asarray(host(2, 2)))
    with pytest.raises(ValueError, match=r"^Affine got input of shape \(4, 3\) \(3 features .* \(expects "
                                         r"5\): reshape the input or build the layer with a matching W\.$"):
        layer.forward(xbp.asarray(host(3, 4, 3)))


def test_one_hot_gives_identity_rows_in_the_dtype_asked_for(xp):
    from xbp.functions import one_hot

    labels = xbp.asarray(np.array([2, 0, 1, 2]))
    hot = one_hot(labels, 3)
    assert hot.dtype == xp.float32 and xbp.device(hot) == xbp.device(labels)
    np.testing.assert_array_equal(xbp.to_cpu(hot), np.eye(3, dtype=np.float32)[[2, 0, 1, 2]])
    assert one_hot(labels, 4, dtype=xp.float64).dtype == xp.float64


def test_softmax_and_log_softmax_along_the_last_axis(xp):
    from xbp.functions import log_softmax, softmax

    x_host = host(13, 2, 3, 4, low=-5, high=5)  # 3-D: the last axis, not the second
    expected = np.exp(x_host) / np.exp(x_host).sum(axis=-1, keepdims=True)
    x = xbp.asarray(x_host)
    assert relative_error(softmax(x), expected) < 1e-14
    assert relative_error(log_softmax(x), np.log(expected)) < 1e-14
    huge = xbp.asarray([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4]], dtype="float64")  # per-row maximum: finite
    third = 1 / 3
    np.testing.assert_allclose(xbp.to_cpu(softmax(huge)), [[1.0, 0.0, 0.0], [third, third, third]],
                               rtol=1e-15, atol=1e-300)
    np.testing.assert_allclose(xbp.to_cpu(log_softmax(huge)), [[0.0, -1e4, -2e4], [-math.log(3)] * 3],
                               rtol=1e-15)


@pytest.mark.parametrize("one_hot_labels", [False, True], ids=["labels", "one-hot"])
def test_cross_entropy_error_is_the_books_loss(xp, one_hot_labels):
    from xbp.functions import cross_entropy_error

    y_host = ref_softmax(host(14, 4, 3))
    labels = np.array([2, 0, 1, 2])
    t_host = np.eye(3)[labels] if one_hot_labels else labels
    loss = cross_entropy_error(xbp.asarray(y_host), xbp.asarray(t_host))
    expected = -np.sum(np.log(y_host[np.arange(4), labels] + 1e-7)) / 4
    assert abs(float(loss) - expected) < 1e-14 * expected
    # one sample as a 1-D y: its label as a 0-d array, or its one-hot row
    one = cross_entropy_error(xbp.asarray(y_host[1]), xbp.asarray(np.eye(3)[0] if one_hot_labels else 0))
    assert abs(float(one) + math.log(y_host[1, 0] + 1e-7)) < 1e-14
    # the book's 1e-7 keeps a probability of 0 from giving inf
    zero = cross_entropy_error(xbp.asarray([[0.0, 1.0]], dtype="float64"), xbp.asarray([0]))
    assert float(zero) == pytest.approx(-math.log(1e-7), rel=1e-14)


def test_cross_entropy_error_keeps_the_dtype_and_device_of_y():
    from xbp.functions import cross_entropy_error

    with xbp.using_backend("array_api_strict", device="device1"):
        y, t = xbp.asarray(ref_softmax(host(15, 3, 4)), dtype="float32"), xbp.asarray([3, 0, 1])
    loss = cross_entropy_error(y, t)
    assert loss.dtype == y.dtype and xbp.device(loss) == xbp.device(y)
    with pytest.raises(xbp.DeviceMismatchError):  # labels on another device than y
        cross_entropy_error(y, xbp.asarray([3, 0, 1]))
    with pytest.raises(xbp.DeviceMismatchError):
        cross_entropy_error(xbp.asarray(ref_softmax(host(15, 3, 4))), t)


def test_softmax_with_loss_checks_the_range_on_every_call_and_each_new_one_hot_shape(xp):
    layer, x = SoftmaxWithLoss(), xbp.asarray(host(1, 3, 4))
    layer.forward(x, xbp.asarray([0, 1, 2]))
    with pytest.raises(ValueError, match=r"^label 4 is out of range: class labels must be in \[0, 4\) for 4 "
                                         r"classes\.$"):
        layer.forward(x, xbp.asarray([0, 4, 2]))  # the same kind of labels as the call before
    layer.forward(x, xbp.asarray(np.eye(4)[[0, 1, 2]]))
    with pytest.raises(ValueError, match=r"one-hot labels have shape \(3, 5\) but there are 4 classes"):
        layer.forward(x, xbp.asarray(np.eye(5)[[0, 1, 2]]))


def test_softmax_with_loss_without_check_labels_reads_nothing_back(xp, monkeypatch):
    import xbp.functions

    def read_back(*args, **kwargs):
        raise AssertionError("the range was checked")

    monkeypatch.setattr(xbp.functions, "check_label_range", read_back)
    layer = SoftmaxWithLoss(check_labels=False)
    for _ in range(2):
        layer.forward(xbp.asarray(host(1, 3, 4)), xbp.asarray([0, 1, 2]))


def test_softmax_with_loss_takes_one_hot_labels_of_any_dtype_in_the_logits_dtype(xp):
    x = xbp.asarray(host(1, 3, 4), dtype="float32")
    for dtype in ("float64", "int64", "float32"):
        layer = SoftmaxWithLoss()
        loss = layer.forward(x, xbp.asarray(np.eye(4)[[0, 3, 1]], dtype=dtype))
        assert loss.dtype == x.dtype and layer.t.dtype == x.dtype
        assert float(loss) == pytest.approx(float(SoftmaxWithLoss().forward(x, xbp.asarray([0, 3, 1]))))


def test_softmax_with_loss_refuses_logits_that_are_not_a_matrix(xp):
    with pytest.raises(ValueError, match=r"^SoftmaxWithLoss expects logits of shape \(N, C\), got \(4,\)\.$"):
        SoftmaxWithLoss().forward(xbp.asarray(host(1, 4)), xbp.asarray([1]))


@pytest.mark.parametrize("elsewhere", ["x", "W", "b", "dout"])
def test_affine_refuses_arrays_on_two_devices(elsewhere):
    arrays = {}
    for name, shape in (("x", (4, 3)), ("W", (3, 2)), ("b", (2,)), ("dout", (4, 2))):
        with xbp.using_backend("array_api_strict", device="device1" if name == elsewhere else None):
            arrays[name] = xbp.asarray(host(len(arrays) + 1, *shape))
    layer = Affine(arrays["W"], arrays["b"])
    with pytest.raises(xbp.DeviceMismatchError):
        layer.forward(arrays["x"])
        layer.backward(arrays["dout"])


@pytest.mark.parametrize("elsewhere", ["x", "t"])
def test_softmax_with_loss_refuses_logits_and_labels_on_two_devices(elsewhere):
    arrays = {}
    for name, value in (("x", host(1, 3, 4)), ("t", np.array([0, 3, 1]))):
        with xbp.using_backend("array_api_strict", device="device1" if name == elsewhere else None):
            arrays[name] = xbp.asarray(value)
    with pytest.raises(xbp.DeviceMismatchError):
        SoftmaxWithLoss().forward(arrays["x"], arrays["t"])
