"""Pure functions the layers are built from, written once against the Array API standard.

Each takes arrays of any backend and returns arrays of the same namespace, device and dtype.
They are numerically stable: `sigmoid` uses tanh, so it never overflows, and `softmax` /
`log_softmax` subtract the row maximum (the log-sum-exp trick), so logits of +-1e4 give finite,
correct values. NaN in gives NaN out.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

import array_api_extra as xpx

from xbp.backend import array_namespace, device

__all__ = ["check_counting", "check_label_range", "cross_entropy_error", "log_softmax", "one_hot",
           "sigmoid", "softmax", "validate_labels"]


def sigmoid(x: Any) -> Any:
    """1 / (1 + exp(-x)), computed as (tanh(x / 2) + 1) / 2, which cannot overflow."""
    xp = array_namespace(x)
    return (xp.tanh(x * 0.5) + 1) * 0.5


def log_softmax(x: Any) -> Any:
    """x - log(sum(exp(x))) along the last axis, with the row maximum subtracted first."""
    xp = array_namespace(x)
    shifted = x - xp.max(x, axis=-1, keepdims=True)
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=-1, keepdims=True))


def softmax(x: Any) -> Any:
    """exp(x) / sum(exp(x)) along the last axis, with the row maximum subtracted first."""
    xp = array_namespace(x)
    e = xp.exp(x - xp.max(x, axis=-1, keepdims=True))
    return e / xp.sum(e, axis=-1, keepdims=True)


def one_hot(t: Any, num_classes: int, dtype: Any = None) -> Any:
    """(N,) integer labels -> (N, num_classes) array with 1 at each label (float32 by default)."""
    xp = array_namespace(t)
    return xpx.one_hot(t, num_classes, dtype=xp.float32 if dtype is None else dtype, xp=xp)


def _one_hot(xp: ModuleType, t: Any, num_classes: int, dtype: Any) -> Any:
    """Row t[i] of the identity matrix, for each i (labels must be in range: take may wrap)."""
    return xp.take(xp.eye(num_classes, dtype=dtype, device=device(t)), t, axis=0)


def cross_entropy_error(y: Any, t: Any) -> Any:
    """-sum(t * log(y + 1e-7)) / N: the book's loss for probabilities `y` and labels `t`.

    `t` holds integer labels (N,) or one-hot rows (N, C). A 1-D `y` is one sample.
    """
    xp = array_namespace(y, t)
    if y.ndim == 1:
        y = xp.reshape(y, (1, -1))
        t = xp.reshape(t, (1, -1) if t.ndim == 1 and t.shape[0] == y.shape[1] else (1,))
    target = t if t.ndim == 2 else _one_hot(xp, t, y.shape[1], y.dtype)
    return -xp.sum(target * xp.log(y + 1e-7)) / y.shape[0]


def validate_labels(xp: ModuleType, t: Any, classes: int, *, name: str = "", values: bool = True) -> None:
    """Raise ValueError unless `t` holds labels of `classes` classes: integer class indices (N,) in
    [0, classes), or one-hot rows (N, classes). `values=False` skips the range, which reads two numbers
    back from the device; `name` (such as "train") begins each message."""
    said = f"{name} " if name else ""
    if t.ndim not in (1, 2):
        raise ValueError(f"{said}labels must be (N,) class indices or (N, C) one-hot rows, "
                         f"got shape {tuple(t.shape)}.")
    if t.ndim == 2:
        if t.shape[1] != classes:
            raise ValueError(f"{said}one-hot labels have shape {tuple(t.shape)} but there are {classes} "
                             f"classes: give {classes} columns, one per class.")
        return
    if not xp.isdtype(t.dtype, "integral"):
        raise ValueError(f"{said}1-D labels must be integer class indices, got dtype {t.dtype}; convert "
                         "them with xp.astype(t, xp.int64), or pass one-hot rows (N, C).")
    if values:
        check_label_range(xp, t, classes, name=name)


def check_counting(who: str, n: int, labels: int, batch_size: int | None) -> None:
    """Refuse what accuracy cannot be counted over: no samples, a label count that differs, or a
    batch_size that is not a positive number (None picks the default)."""
    if batch_size is not None and (isinstance(batch_size, bool) or batch_size < 1):
        raise ValueError(f"batch_size must be a positive number of samples or None, got {batch_size!r}.")
    if n == 0 or labels != n:
        raise ValueError(f"{who} needs one label per sample and at least one sample; got {n} samples "
                         f"and {labels} labels.")


def check_label_range(xp: ModuleType, t: Any, classes: int, *, name: str = "") -> None:
    """Raise ValueError unless the integer class indices `t` (N,) are in [0, classes); reads two
    numbers back from the device."""
    if t.shape[0]:
        low, high = int(xp.min(t)), int(xp.max(t))
        if low < 0 or high >= classes:
            said = f"{name} " if name else ""
            raise ValueError(f"{said}label {low if low < 0 else high} is out of range: class labels must be "
                             f"in [0, {classes}) for {classes} classes.")
