"""Convolution, Pooling, im2col and col2im on every backend: forward against a direct float64 loop written
here (and against PyTorch's conv2d / max_pool2d where torch is installed), backward against central
differences, no input changed."""

from __future__ import annotations

import importlib.util
import itertools

import numpy as np
import pytest

import xbp
from tests.harness import check_backward, host, relative_error
from xbp.layers import Convolution, Pooling, col2im, conv_output_size, im2col


def ref_conv(x: np.ndarray, W: np.ndarray, b: np.ndarray, stride: int, pad: int) -> np.ndarray:
    """out[n, f, i, j] = sum(c, u, v) x_pad[n, c, i*stride + u, j*stride + v] * W[f, c, u, v] + b[f]"""
    n, _, height, width = x.shape
    filters, _, fh, fw = W.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (height + 2 * pad - fh) // stride + 1, (width + 2 * pad - fw) // stride + 1
    out = np.empty((n, filters, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        window = xp_[:, :, i * stride:i * stride + fh, j * stride:j * stride + fw]
        out[:, :, i, j] = np.tensordot(window, W, axes=([1, 2, 3], [1, 2, 3])) + b
    return out


def ref_pool(x: np.ndarray, ph: int, pw: int, stride: int, pad: int) -> np.ndarray:
    """The maximum of each window of the zero-padded x."""
    n, c, height, width = x.shape
    xp_ = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    oh, ow = (height + 2 * pad - ph) // stride + 1, (width + 2 * pad - pw) // stride + 1
    out = np.empty((n, c, oh, ow))
    for i, j in itertools.product(range(oh), range(ow)):
        out[:, :, i, j] = xp_[:, :, i * stride:i * stride + ph, j * stride:j * stride + pw].max(axis=(2, 3))
    return out


CONV_CASES = [  # (N, C, H, W, FN, FH, FW, stride, pad)
    (2, 3, 7, 7, 4, 3, 3, 1, 0),
    (1, 2, 6, 5, 3, 3, 2, 1, 1),  # batch of one, a non-square filter and image
    (2, 1, 8, 8, 2, 3, 3, 2, 1),  # stride 2, windows that do not all fit (floored)
    (2, 2, 5, 5, 3, 2, 2, 2, 0),  # non-overlapping windows
    (1, 1, 4, 4, 2, 3, 3, 1, 2),  # pad larger than the overlap
]


@pytest.mark.parametrize("case", CONV_CASES, ids=lambda c: "N{}C{}H{}W{}-F{}x{}x{}-s{}p{}".format(*c))
def test_convolution(xp, case):
    n, c, height, width, filters, fh, fw, stride, pad = case
    x_host, W_host, b_host = host(1, n, c, height, width), host(2, filters, c, fh, fw), host(3, filters)
    expected = ref_conv(x_host, W_host, b_host, stride, pad)
    x, W, b = (xbp.asarray(a) for a in (x_host, W_host, b_host))
    layer = Convolution(W, b, stride, pad)
    out = layer.forward(x)
    assert tuple(out.shape) == expected.shape
    assert relative_error(out, expected) < 1e-13
    dout = xbp.asarray(host(4, *expected.shape))

    def forward(x_, W_, b_):
        layer.W, layer.b = W_, b_
        return layer.forward(x_)

    def backward(d):
        return layer.backward(d), layer.dW, layer.db

    check_backward(forward, backward, [x, W, b], dout)


POOL_CASES = [  # (N, C, H, W, pool_h, pool_w, stride, pad)
    (2, 3, 8, 8, 2, 2, 2, 0),  # the nets' pooling: windows tile the image
    (2, 2, 7, 7, 2, 2, 2, 0),  # the last row and column fall outside every window
    (1, 2, 7, 7, 3, 3, 2, 0),  # overlapping windows: a pixel can be the maximum of two
    (2, 1, 6, 6, 3, 3, 2, 1),  # zero padding (the book's)
    (1, 1, 5, 6, 2, 3, 1, 0),
]


@pytest.mark.parametrize("case", POOL_CASES, ids=lambda c: "N{}C{}H{}W{}-{}x{}-s{}p{}".format(*c))
def test_pooling(xp, case):
    n, c, height, width, ph, pw, stride, pad = case
    # distinct values a good way from each other, so that each window has one clear maximum and a
    # central difference never swaps two of them
    x_host = np.random.default_rng(5).permutation(n * c * height * width).reshape(n, c, height, width) * 0.1
    expected = ref_pool(x_host, ph, pw, stride, pad)
    x = xbp.asarray(x_host)
    layer = Pooling(ph, pw, stride, pad)
    out = layer.forward(x)
    assert relative_error(out, expected) == 0
    check_backward(layer.forward, layer.backward, [x], xbp.asarray(host(6, *expected.shape)))


def test_pooling_routes_the_gradient_to_the_first_maximum_of_a_tie(xp):
    x = xbp.asarray(np.array([[[[1.0, 3.0], [3.0, 0.0]]]]))  # two maxima; the first in row-major order
    layer = Pooling(2, 2, 2)
    assert xbp.to_cpu(layer.forward(x)).tolist() == [[[[3.0]]]]
    dx = layer.backward(xbp.asarray(np.array([[[[5.0]]]])))
    assert xbp.to_cpu(dx).tolist() == [[[[0.0, 5.0], [0.0, 0.0]]]]


@pytest.mark.parametrize(("filter_size", "stride", "pad"), [(3, 1, 0), (3, 2, 1), (2, 2, 0), (4, 3, 2)])
def test_col2im_is_the_adjoint_of_im2col(xp, filter_size, stride, pad):
    """<im2col(x), c> == <x, col2im(c)> for every x and c: what makes col2im the gradient of im2col."""
    x_host = host(7, 2, 3, 9, 9)
    col = im2col(xbp.asarray(x_host), filter_size, filter_size, stride, pad)
    out = conv_output_size(9, filter_size, stride, pad)
    assert tuple(col.shape) == (2 * out * out, 3 * filter_size * filter_size)
    c_host = host(8, *col.shape)
    back = col2im(xbp.asarray(c_host), x_host.shape, filter_size, filter_size, stride, pad)
    assert tuple(back.shape) == x_host.shape
    lhs = float(np.sum(xbp.to_cpu(col) * c_host))
    rhs = float(np.sum(x_host * xbp.to_cpu(back)))
    assert abs(lhs - rhs) < 1e-10 * abs(lhs)


def test_im2col_has_the_books_row_and_column_order(xp):
    """Row (n, i, j), column (c, u, v): x[n, c, i*stride + u - pad, j*stride + v - pad]."""
    x_host = host(9, 2, 3, 5, 4)
    col = xbp.to_cpu(im2col(xbp.asarray(x_host), 3, 2, stride=2, pad=1))
    padded = np.pad(x_host, ((0, 0), (0, 0), (1, 1), (1, 1)))
    oh, ow = conv_output_size(5, 3, 2, 1), conv_output_size(4, 2, 2, 1)
    for n, i, j in itertools.product(range(2), range(oh), range(ow)):
        window = padded[n, :, i * 2:i * 2 + 3, j * 2:j * 2 + 2]
        np.testing.assert_array_equal(col[(n * oh + i) * ow + j], window.reshape(-1))


def test_convolution_can_skip_the_input_gradient(xp):
    W, b = xbp.asarray(host(1, 2, 1, 3, 3)), xbp.asarray(host(2, 2))
    x, dout = xbp.asarray(host(3, 2, 1, 5, 5)), xbp.asarray(host(4, 2, 2, 3, 3))
    full, lean = Convolution(W, b), Convolution(W, b)
    full.forward(x), lean.forward(x)
    full.backward(dout)
    assert lean.backward(dout, need_dx=False) is None
    assert relative_error(lean.dW, full.dW) == 0 and relative_error(lean.db, full.db) == 0


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_convolution_and_pooling_preserve_dtype(xp, dtype):
    x = xbp.asarray(host(1, 2, 3, 6, 6), dtype=dtype)
    conv = Convolution(xbp.asarray(host(2, 4, 3, 3, 3), dtype=dtype), xbp.asarray(host(3, 4), dtype=dtype),
                       pad=1)
    pool = Pooling(2, 2, 2)
    y = pool.forward(conv.forward(x))
    dx = conv.backward(pool.backward(y))
    assert y.dtype == dx.dtype == conv.dW.dtype == conv.db.dtype == x.dtype


def test_convolution_and_pooling_refuse_input_of_the_wrong_shape(xp):
    conv = Convolution(xbp.asarray(host(1, 4, 3, 3, 3)), xbp.asarray(host(2, 4)))
    with pytest.raises(ValueError, match=r"Convolution expects \(N, 3, H, W\) images for its \(4, 3, 3, 3\) "
                                         r"filters, got shape \(2, 1, 6, 6\)"):
        conv.forward(xbp.asarray(host(3, 2, 1, 6, 6)))
    with pytest.raises(ValueError, match=r"expected an NCHW image batch .* got shape \(2, 784\); reshape"):
        Pooling(2, 2).forward(xbp.asarray(host(4, 2, 784)))
    with pytest.raises(ValueError, match=r"a filter of 5 does not fit an input of 3 padded by 0"):
        Pooling(5, 5).forward(xbp.asarray(host(5, 1, 1, 3, 3)))


@pytest.mark.parametrize(("args", "message"), [
    ((28, 5, 0, 0), r"stride must be >= 1"),
    ((28, 5, 1, -1), r"pad >= 0"),
    ((4, 7, 1, 1), r"a filter of 7 does not fit an input of 4 padded by 1 on each side"),
])
def test_conv_output_size_refuses_what_cannot_be(args, message):
    with pytest.raises(ValueError, match=message):
        conv_output_size(*args)


def test_conv_output_size_floors_as_the_books_im2col():
    assert conv_output_size(28, 5) == 24 and conv_output_size(14, 3, 1, 2) == 16
    assert conv_output_size(8, 3, stride=2, pad=1) == 4 and conv_output_size(7, 2, stride=2) == 3


@pytest.mark.skipif(importlib.util.find_spec("torch") is None,
                    reason="torch is not installed (pip install -r backends/torch.txt): the check "
                           "against conv2d and max_pool2d needs it")
def test_convolution_and_pooling_match_pytorch_in_float64():
    import torch
    from torch.nn import functional

    x_host, W_host, b_host = host(10, 3, 2, 9, 9), host(11, 5, 2, 3, 3), host(12, 5)
    conv, pool = Convolution(W_host, b_host, stride=2, pad=1), Pooling(2, 2, 2)
    out = pool.forward(conv.forward(x_host))
    dout = host(13, *out.shape)
    dx = conv.backward(pool.backward(dout))
    tx, tW, tb = (torch.tensor(a, requires_grad=True) for a in (x_host, W_host, b_host))
    ref = functional.max_pool2d(functional.conv2d(tx, tW, tb, stride=2, padding=1), 2, 2)
    ref.backward(torch.tensor(dout))
    assert relative_error(out, ref.detach().numpy()) < 1e-13
    assert relative_error(dx, tx.grad.numpy()) < 1e-13
    assert relative_error(conv.dW, tW.grad.numpy()) < 1e-13
    assert relative_error(conv.db, tb.grad.numpy()) < 1e-13
