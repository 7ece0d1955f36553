"""Layers: each node of a computational graph, with its forward pass and its local derivative.

Every layer follows the book's protocol: `forward(...)` computes the output and keeps only what
`backward` needs; `backward(dout)` takes dL/d(output) and returns dL/d(input), never mutating
`dout`. Layers with parameters keep them (`W`, `b`) and their gradients (`dW`, `db`) as arrays of
one namespace and device. No layer imports an array library: each asks its inputs with
`array_namespace`, so the same code runs on numpy, CuPy, torch or array-api-strict.

    layer               forward                      backward (dout = dL/dout)
    MulLayer            out = x * y                  dx = dout * y,     dy = dout * x
    AddLayer            out = x + y                  dx = dout,         dy = dout
    Relu                out = max(0, x)              dx = dout where x > 0, else 0
    Sigmoid             out = 1 / (1 + exp(-x))      dx = dout * out * (1 - out)
    Affine              out = x @ W + b              dx = dout @ W.T,   dW = x.T @ dout,  db = sum(dout)
    SoftmaxWithLoss     y = softmax(x), L = CE(y,t)  dx = dout * (y - t) / N
    BatchNormalization  xn = (x - mean) / std        dx = (dxn - mean(dxn) - xn * mean(dxn * xn)) / std
                        out = gamma * xn + beta      dgamma = sum(dout * xn),  dbeta = sum(dout)
    Dropout             out = x * mask               dx = dout * mask   (mask = u > ratio, u ~ U[0, 1))

Convolution and Pooling (NCHW images, the book's im2col) live in `xbp.convolution` and are
re-exported here, with `im2col`, `col2im` and `conv_output_size`.

BatchNormalization and Dropout behave differently in training and in inference: their `forward`
takes `train_flg` (True by default, as in the book), and a net passes its own `train_flg` on.
"""

from __future__ import annotations

from typing import Any

from xbp.backend import DeviceRNG, array_namespace, device
from xbp.convolution import Convolution, Pooling, col2im, conv_output_size, im2col
from xbp.functions import check_label_range, sigmoid, validate_labels

__all__ = ["AddLayer", "Affine", "BatchNormalization", "Convolution", "Dropout", "MulLayer", "Pooling",
           "Relu", "Sigmoid", "SoftmaxWithLoss", "col2im", "conv_output_size", "im2col"]


class MulLayer:
    """out = x * y.   dx = dout * y,  dy = dout * x"""

    def __init__(self) -> None:
        self.x: Any = None
        self.y: Any = None

    def forward(self, x: Any, y: Any) -> Any:
        self.x = x
        self.y = y
        return x * y

    def backward(self, dout: Any = 1) -> tuple[Any, Any]:
        dx = dout * self.y  # the two inputs swap places
        dy = dout * self.x
        return dx, dy


class AddLayer:
    """out = x + y.   dx = dout,  dy = dout"""

    def __init__(self) -> None:
        pass

    def forward(self, x: Any, y: Any) -> Any:
        return x + y

    def backward(self, dout: Any = 1) -> tuple[Any, Any]:
        dx = dout * 1  # passed on unchanged
        dy = dout * 1
        return dx, dy


class Relu:
    """out = max(0, x).   dx = dout where x > 0, else 0"""

    def __init__(self) -> None:
        self.mask: Any = None  # 1 where x > 0, else 0, in x's dtype

    def forward(self, x: Any) -> Any:
        xp = array_namespace(x)
        self.mask = xp.astype(x > 0, x.dtype)
        return xp.maximum(x, 0.0)  # NaN in gives NaN out

    def backward(self, dout: Any = 1) -> Any:
        return dout * self.mask


class Sigmoid:
    """out = 1 / (1 + exp(-x)).   dx = dout * out * (1 - out)"""

    def __init__(self) -> None:
        self.out: Any = None

    def forward(self, x: Any) -> Any:
        self.out = sigmoid(x)
        return self.out

    def backward(self, dout: Any = 1) -> Any:
        return dout * (1.0 - self.out) * self.out


class Affine:
    """out = x @ W + b.   dx = dout @ W.T,  dW = x.T @ dout,  db = sum(dout, axis=0)

    `x` may be N-D: it is seen as (N, -1), and `dx` comes back in x's shape.
    """

    def __init__(self, W: Any, b: Any) -> None:
        self.W = W
        self.b = b
        self.x: Any = None
        self.original_x_shape: tuple[int, ...] = ()
        self.dW: Any = None
        self.db: Any = None

    def forward(self, x: Any) -> Any:
        xp = array_namespace(x, self.W, self.b)
        self.original_x_shape = tuple(x.shape)
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], -1))
        if x.shape[1] != self.W.shape[0]:
            raise ValueError(
                f"Affine got input of shape {self.original_x_shape} ({x.shape[1]} features per "
                f"sample) but W has shape {tuple(self.W.shape)} (expects {self.W.shape[0]}): "
                "reshape the input or build the layer with a matching W.")
        self.x = x
        out = x @ self.W
        out += self.b  # in place: one array fewer than x @ W + b
        return out

    def backward(self, dout: Any = 1, *, need_dx: bool = True) -> Any:
        """dL/dx; with `need_dx=False` only dW and db are computed and None is returned.

        Training skips dx of the first layer, which feeds nothing (as PyTorch does).
        """
        xp = array_namespace(dout, self.x)
        self.dW = self.x.T @ dout
        self.db = xp.sum(dout, axis=0)
        if not need_dx:
            return None
        dx = dout @ self.W.T
        if dx.shape != self.original_x_shape:
            dx = xp.reshape(dx, self.original_x_shape)
        return dx


class SoftmaxWithLoss:
    """y = softmax(x), loss = -sum(t * log y) / N.   dx = dout * (y - t) / N

    `t` holds integer class labels (N,) or one-hot rows (N, C). The loss comes from log-softmax
    (the log-sum-exp trick), so it is finite for any finite logits. Labels are checked: out of
    range, float 1-D labels, a wrong one-hot shape or a batch size that differs from the logits raise
    ValueError. The range check reads two numbers back from the device; code that has checked its
    labels once (as `xbp.training.fit` does) may turn it off with `check_labels = False`.
    """

    def __init__(self, check_labels: bool = True) -> None:
        self.check_labels = check_labels
        self.loss: Any = None
        self.y: Any = None  # softmax output
        self.t: Any = None  # one-hot labels, in x's dtype
        self._identity: Any = None  # its rows are the one-hot labels; kept while C, dtype, device hold
        self._identity_key: tuple[Any, ...] = ()

    def forward(self, x: Any, t: Any) -> Any:
        xp = array_namespace(x, t)
        target = self._one_hot_target(xp, x, t)
        shifted = x - xp.max(x, axis=1, keepdims=True)  # log-sum-exp: exp never overflows
        y = xp.exp(shifted)
        total = xp.sum(y, axis=1, keepdims=True)
        y /= total  # softmax; in place, in arrays made here (a new array on JAX)
        shifted -= xp.log(total)  # log-softmax
        self.y = y
        self.t = target
        self.loss = xp.sum(target * shifted) / -x.shape[0]
        return self.loss

    def backward(self, dout: Any = 1) -> Any:
        dx = self.y - self.t
        dx *= dout / self.t.shape[0]
        return dx

    def _one_hot_target(self, xp: Any, x: Any, t: Any) -> Any:
        if x.ndim != 2:
            raise ValueError(f"SoftmaxWithLoss expects logits of shape (N, C), got {tuple(x.shape)}.")
        n, classes = x.shape
        # 1-D labels of the kind seen last time passed the checks of shape and dtype. No device object
        # in the key: JAX's cannot be deep-copied.
        key = (classes, t.ndim, tuple(t.shape[1:]), x.dtype, t.dtype, type(x), str(device(x)))
        seen = key == self._identity_key
        if not seen:
            validate_labels(xp, t, classes, values=self.check_labels)
        elif self.check_labels:
            check_label_range(xp, t, classes)
        if t.shape[0] != n:
            raise ValueError(f"batch size mismatch: logits have {n} rows but labels have "
                             f"{t.shape[0]}; pass one label per sample.")
        if t.ndim == 2:
            return xp.astype(t, x.dtype) if t.dtype != x.dtype else t
        if not seen:
            self._identity = xp.eye(classes, dtype=x.dtype, device=device(x))
            self._identity_key = key
        return xp.take(self._identity, t, axis=0)


class BatchNormalization:
    """out = gamma * (x - mean) / sqrt(var + eps) + beta, per feature over the batch.

        training:   mean, var of this batch;  running = momentum * running + (1 - momentum) * batch
        inference:  mean, var = running_mean, running_var
        backward:   dbeta = sum(dout),  dgamma = sum(dout * xn),  dxn = gamma * dout,
                    dx = (dxn - mean(dxn) - xn * mean(dxn * xn)) / std   (training)
                    dx = dxn / std                                       (inference)

    `x` may be N-D: it is seen as (N, -1), as in the book, and `dx` comes back in x's shape. The
    running statistics start at zero (the book's choice), in gamma's dtype and on its device.
    """

    buffers = ("running_mean", "running_var")  # state kept between calls: moved and cast with the net

    def __init__(self, gamma: Any, beta: Any, momentum: float = 0.9, running_mean: Any = None,
                 running_var: Any = None, *, eps: float = 1e-6) -> None:
        self.gamma = gamma
        self.beta = beta
        self.momentum = momentum
        # The book starts the running statistics at zero; they live where gamma lives, from the start.
        self.running_mean = array_namespace(gamma).zeros_like(gamma) if running_mean is None else running_mean
        self.running_var = array_namespace(gamma).zeros_like(gamma) if running_var is None else running_var
        self.eps = eps  # the book's 10e-7
        self.input_shape: tuple[int, ...] = ()
        self.train_flg = True
        self.xn: Any = None
        self.std: Any = None
        self.dgamma: Any = None
        self.dbeta: Any = None

    def forward(self, x: Any, train_flg: bool = True) -> Any:
        xp = array_namespace(x, self.gamma, self.beta)
        self.input_shape = tuple(x.shape)
        if x.ndim != 2:
            x = xp.reshape(x, (x.shape[0], -1))
        if train_flg:
            mu = xp.mean(x, axis=0)
            xc = x - mu
            var = xp.mean(xc * xc, axis=0)
            self.std = xp.sqrt(var + self.eps)
            self.running_mean = self.momentum * self.running_mean + (1 - self.momentum) * mu
            self.running_var = self.momentum * self.running_var + (1 - self.momentum) * var
        else:
            xc = x - self.running_mean
            self.std = xp.sqrt(self.running_var + self.eps)
        self.train_flg = train_flg
        self.xn = xc / self.std
        out = self.gamma * self.xn + self.beta
        return out if out.shape == self.input_shape else xp.reshape(out, self.input_shape)

    def backward(self, dout: Any) -> Any:
        xp = array_namespace(dout, self.xn)
        if dout.ndim != 2:
            dout = xp.reshape(dout, (dout.shape[0], -1))
        self.dbeta = xp.sum(dout, axis=0)
        self.dgamma = xp.sum(dout * self.xn, axis=0)
        dxn = self.gamma * dout
        if self.train_flg:  # the batch mean and std depend on x too: the book's graph, collapsed
            dxn = (dxn - xp.mean(dxn, axis=0)
                   - self.xn * xp.mean(dxn * self.xn, axis=0))
        dx = dxn / self.std
        return dx if dx.shape == self.input_shape else xp.reshape(dx, self.input_shape)


class Dropout:
    """out = x * mask in training (mask = u > ratio, u ~ U[0, 1) drawn anew each call),
    out = x * (1 - ratio) in inference.   dx = dout * mask  (training),  dout * (1 - ratio)  (inference)

    The book's (non-inverted) dropout. Masks are drawn on x's device with `xbp.backend.DeviceRNG`,
    from `seed`, so a run repeats exactly (on CuPy and torch CUDA, on the same GPU model: the
    generator's state size follows the number of multiprocessors). With `fixed_mask = True`,
    training reuses the last mask (drawing one only if there is none), which makes the layer a
    fixed function for gradient checks.
    """

    def __init__(self, dropout_ratio: float = 0.5, *, seed: int | None = None) -> None:
        if not 0.0 <= dropout_ratio < 1.0:
            raise ValueError(f"dropout_ratio must be in [0, 1) (the fraction of units dropped), "
                             f"got {dropout_ratio!r}.")
        self.dropout_ratio = dropout_ratio
        self.rng = DeviceRNG(seed)
        self.mask: Any = None
        self.fixed_mask = False
        self.train_flg = True

    def forward(self, x: Any, train_flg: bool = True) -> Any:
        xp = array_namespace(x)
        self.train_flg = train_flg
        if not train_flg:
            return x * (1.0 - self.dropout_ratio)
        if not self.fixed_mask or self.mask is None:
            self.mask = self.rng.uniform(x.shape, like=x) > self.dropout_ratio
        elif self.mask.shape != x.shape:
            raise ValueError(f"Dropout has a fixed mask of shape {tuple(self.mask.shape)} but got input "
                             f"of shape {tuple(x.shape)}: set fixed_mask = False, or mask = None to draw "
                             "a new one.")
        return xp.where(self.mask, x, 0.0)

    def backward(self, dout: Any) -> Any:
        if not self.train_flg:
            return dout * (1.0 - self.dropout_ratio)
        xp = array_namespace(dout, self.mask)
        return xp.where(self.mask, dout, 0.0)
