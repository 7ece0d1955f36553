"""Convolution and pooling, the book's chapter 7: an image batch unrolled into a matrix (im2col), so a
convolution is one matrix product, and the matrix folded back (col2im) for the gradient.

Images are NCHW: (batch, channels, height, width); filters are (FN, C, FH, FW). `im2col` turns x into
one row per output position (n, y, x) and one column per filter tap (c, fy, fx), the book's order; a
convolution is then `im2col(x) @ W.reshape(FN, -1).T + b`. `col2im` is its adjoint: it adds each
column back into the pixel it came from, so pixels that several windows share sum their gradients.

    layer        forward                                 backward (dout = dL/dout)
    Convolution  out = im2col(x) @ W_col + b             dW = col.T @ dout,  db = sum(dout),
                                                         dx = col2im(dout @ W_col.T)
    Pooling      out = max over each window              dx = dout routed to each window's first
                                                         maximum, 0 elsewhere (col2im adds them)

Written once against the Array API standard: zero padding and the scatter-add of col2im come from
array-api-extra (`pad`, `at(...).add`), which work on every library, immutable JAX arrays included.
"""

from __future__ import annotations

from typing import Any

import array_api_extra as xpx

from xbp.backend import array_namespace, device

__all__ = ["Convolution", "Pooling", "col2im", "conv_output_size", "im2col"]


def conv_output_size(input_size: int, filter_size: int, stride: int = 1, pad: int = 0) -> int:
    """floor((input_size + 2 * pad - filter_size) / stride) + 1: windows that do not fit are left out,
    as the book's im2col (and PyTorch) leave them."""
    if stride < 1 or pad < 0 or filter_size < 1:
        raise ValueError(f"stride must be >= 1, pad >= 0 and the filter size >= 1; got stride={stride}, "
                         f"pad={pad}, filter size {filter_size}.")
    span = input_size + 2 * pad - filter_size
    if span < 0:
        raise ValueError(f"a filter of {filter_size} does not fit an input of {input_size} padded by "
                         f"{pad} on each side: use a smaller filter or a larger pad.")
    return span // stride + 1


def _taps(x: Any, filter_h: int, filter_w: int, stride: int, pad: int) -> tuple[list[Any], int, int]:
    """Every filter tap (fy, fx) of the zero-padded x as one (N, OH, OW, C) view, row-major; OH, OW."""
    xp = array_namespace(x)
    if x.ndim != 4:
        raise ValueError(f"expected an NCHW image batch (batch, channels, height, width), got shape "
                         f"{tuple(x.shape)}; reshape flat images with xp.reshape(x, (-1, 1, 28, 28)).")
    _, _, height, width = x.shape
    out_h = conv_output_size(height, filter_h, stride, pad)
    out_w = conv_output_size(width, filter_w, stride, pad)
    if pad:
        x = xpx.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), xp=xp)
    nhwc = xp.permute_dims(x, (0, 2, 3, 1))  # channels last: each tap is then one strided slice
    taps = [nhwc[:, fy:fy + stride * (out_h - 1) + 1:stride, fx:fx + stride * (out_w - 1) + 1:stride, :]
            for fy in range(filter_h) for fx in range(filter_w)]
    return taps, out_h, out_w


def _windows(x: Any, filter_h: int, filter_w: int, stride: int, pad: int) -> tuple[Any, int, int]:
    """(N, OH, OW, C, FH*FW): every window of the zero-padded x, and OH, OW."""
    taps, out_h, out_w = _taps(x, filter_h, filter_w, stride, pad)
    return array_namespace(x).stack(taps, axis=-1), out_h, out_w


def _tiles(height: int, width: int, filter_h: int, filter_w: int, stride: int, pad: int) -> bool:
    """True when the windows tile the image exactly: no overlap, no gap, no padding (2x2, stride 2)."""
    return (not pad and stride == filter_h == filter_w
            and height % stride == 0 and width % stride == 0)


def im2col(input_data: Any, filter_h: int, filter_w: int, stride: int = 1, pad: int = 0) -> Any:
    """(N, C, H, W) -> (N * OH * OW, C * filter_h * filter_w): one row per window, the book's order."""
    windows, _, _ = _windows(input_data, filter_h, filter_w, stride, pad)
    n, out_h, out_w, channels, taps = windows.shape
    return array_namespace(windows).reshape(windows, (n * out_h * out_w, channels * taps))


def col2im(col: Any, input_shape: tuple[int, ...], filter_h: int, filter_w: int, stride: int = 1,
           pad: int = 0) -> Any:
    """The adjoint of im2col: (N * OH * OW, C * FH * FW) -> `input_shape`, overlapping taps summed."""
    xp = array_namespace(col)
    n, channels, height, width = input_shape
    out_h = conv_output_size(height, filter_h, stride, pad)
    out_w = conv_output_size(width, filter_w, stride, pad)
    if tuple(col.shape) != (n * out_h * out_w, channels * filter_h * filter_w):
        raise ValueError(f"col has shape {tuple(col.shape)}, but im2col of {tuple(input_shape)} with a "
                         f"{filter_h}x{filter_w} filter, stride {stride}, pad {pad} has shape "
                         f"{(n * out_h * out_w, channels * filter_h * filter_w)}.")
    windows = xp.reshape(col, (n, out_h, out_w, channels, filter_h, filter_w))
    if _tiles(height, width, filter_h, filter_w, stride, pad):
        # windows that tile the image without overlap (2x2 pooling, stride 2): each pixel has one tap
        tiles = xp.permute_dims(windows, (0, 3, 1, 4, 2, 5))  # (N, C, OH, FH, OW, FW)
        return xp.reshape(tiles, (n, channels, height, width))
    image = xp.zeros((n, height + 2 * pad, width + 2 * pad, channels), dtype=col.dtype,
                     device=device(col))
    for fy in range(filter_h):
        for fx in range(filter_w):
            rows = slice(fy, fy + stride * (out_h - 1) + 1, stride)
            cols = slice(fx, fx + stride * (out_w - 1) + 1, stride)
            image = xpx.at(image, (slice(None), rows, cols, slice(None))).add(
                windows[:, :, :, :, fy, fx], xp=xp)
    image = xp.permute_dims(image, (0, 3, 1, 2))
    return image[:, :, pad:pad + height, pad:pad + width] if pad else image



class Convolution:
    """out = im2col(x) @ W_col + b, W_col = W reshaped (FN, C*FH*FW) and transposed.

        dW = col.T @ dout (reshaped as W),  db = sum(dout) per filter,  dx = col2im(dout @ W_col.T)

    `W` is (FN, C, FH, FW), `b` is (FN,); x is (N, C, H, W) and out is (N, FN, OH, OW), with
    OH = (H + 2 * pad - FH) / stride + 1 (likewise OW). The unrolled input `col` is kept for
    backward: N * OH * OW * C * FH * FW numbers.
    """

    def __init__(self, W: Any, b: Any, stride: int = 1, pad: int = 0) -> None:
        self.W = W
        self.b = b
        self.stride = stride
        self.pad = pad
        self.x_shape: tuple[int, ...] = ()
        self.col: Any = None
        self.col_W: Any = None
        self.dW: Any = None
        self.db: Any = None

    def forward(self, x: Any) -> Any:
        xp = array_namespace(x, self.W, self.b)
        filters, channels, filter_h, filter_w = self.W.shape
        if x.ndim != 4 or x.shape[1] != channels:
            raise ValueError(f"Convolution expects (N, {channels}, H, W) images for its "
                             f"{tuple(self.W.shape)} filters, got shape {tuple(x.shape)}.")
        windows, out_h, out_w = _windows(x, filter_h, filter_w, self.stride, self.pad)
        n = x.shape[0]
        self.x_shape = tuple(x.shape)
        self.col = xp.reshape(windows, (n * out_h * out_w, channels * filter_h * filter_w))
        self.col_W = xp.reshape(self.W, (filters, -1)).T
        out = self.col @ self.col_W
        out += self.b
        return xp.permute_dims(xp.reshape(out, (n, out_h, out_w, filters)), (0, 3, 1, 2))

    def backward(self, dout: Any, *, need_dx: bool = True) -> Any:
        """dL/dx; with `need_dx=False` (a net's first layer) only dW and db, and None is returned."""
        xp = array_namespace(dout, self.col)
        filters, _, filter_h, filter_w = self.W.shape
        dout = xp.reshape(xp.permute_dims(dout, (0, 2, 3, 1)), (-1, filters))
        self.db = xp.sum(dout, axis=0)
        self.dW = xp.reshape((self.col.T @ dout).T, self.W.shape)
        if not need_dx:
            return None
        return col2im(dout @ self.col_W.T, self.x_shape, filter_h, filter_w, self.stride, self.pad)


class Pooling:
    """out = the maximum of each pool_h x pool_w window (stride, zero pad), per channel.

        dx = dout at each window's first maximum (row-major in the window), 0 elsewhere; a pixel in
             several windows gets the sum

    The book unrolls the windows with im2col and takes argmax along each row; this compares the
    window's taps one at a time instead (the same maxima and the same first argmax, without the
    unrolled copy), and routes the gradient back tap by tap, which is col2im for one-hot rows.
    """

    def __init__(self, pool_h: int, pool_w: int, stride: int = 2, pad: int = 0) -> None:
        self.pool_h = pool_h
        self.pool_w = pool_w
        self.stride = stride
        self.pad = pad
        self.x_shape: tuple[int, ...] = ()
        self.arg_max: Any = None  # (N, OH, OW, C): the tap (fy * pool_w + fx) of each window's maximum

    def forward(self, x: Any) -> Any:
        xp = array_namespace(x)
        taps, _, _ = _taps(x, self.pool_h, self.pool_w, self.stride, self.pad)
        out = taps[0]
        arg_max = xp.zeros(out.shape, dtype=xp.int32, device=device(x))
        for index, tap in enumerate(taps[1:], start=1):
            arg_max = xp.where(tap > out, index, arg_max)  # strictly greater: the first maximum stays
            out = xp.maximum(out, tap)  # NaN in gives NaN out
        self.x_shape = tuple(x.shape)
        self.arg_max = arg_max
        return xp.permute_dims(out, (0, 3, 1, 2))

    def backward(self, dout: Any) -> Any:
        xp = array_namespace(dout, self.arg_max)
        n, channels, height, width = self.x_shape
        dout = xp.permute_dims(dout, (0, 2, 3, 1))  # (N, OH, OW, C), as arg_max
        zero = xp.zeros((), dtype=dout.dtype, device=device(dout))
        routed = [xp.where(self.arg_max == index, dout, zero) for index in range(self.pool_h * self.pool_w)]
        stride, pad = self.stride, self.pad
        if _tiles(height, width, self.pool_h, self.pool_w, stride, pad):  # each pixel in one window
            rows = [xp.stack(routed[fy * self.pool_w:(fy + 1) * self.pool_w], axis=3)  # (N, OH, OW, FW, C)
                    for fy in range(self.pool_h)]
            image = xp.reshape(xp.stack(rows, axis=2), (n, height, width, channels))  # (N, OH, FH, OW, FW, C)
            return xp.permute_dims(image, (0, 3, 1, 2))
        out_h, out_w = dout.shape[1], dout.shape[2]
        image = xp.zeros((n, height + 2 * pad, width + 2 * pad, channels), dtype=dout.dtype,
                         device=device(dout))
        for index, part in enumerate(routed):
            fy, fx = divmod(index, self.pool_w)
            where = (slice(None), slice(fy, fy + stride * (out_h - 1) + 1, stride),
                     slice(fx, fx + stride * (out_w - 1) + 1, stride), slice(None))
            image = xpx.at(image, where).add(part, xp=xp)
        image = xp.permute_dims(image, (0, 3, 1, 2))
        return image[:, :, pad:pad + height, pad:pad + width] if pad else image
