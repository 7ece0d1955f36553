"""Checkpoint files: one `.npz` that holds a training run's state, written whole or not at all.

A checkpoint's arrays are the net's state (parameters and layer buffers), the optimizer's slots and
the CuPy generators' states, copied to the host; its member `__meta__` is a JSON document (as bytes)
with everything else: the position reached (the epoch in progress and the steps done in it), the
data-order generator's state before that epoch's permutation, the partial epoch's losses and
seconds, the history so far, the Dropout generators' states, the optimizer's counters, the run's
settings, and the SHA-256 of every array. No pickles.

A file is written to a temporary name beside its target, fsynced and renamed into place, so a kill at
any instant leaves the previous checkpoint whole; `Checkpoints` keeps the newest `keep` of a folder.
`read_checkpoint` reads and checks the whole file before anything is loaded: a truncated, corrupt or
foreign file is refused with the reason. `fit` saves and resumes through `xbp.resume.Checkpointing`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from xbp import backend
from xbp.errors import CheckpointError
from xbp.params_io import dtype_name, read_npz, write_npz

__all__ = ["Checkpoints", "differences", "pack", "read_checkpoint", "run_settings", "unpack",
           "write_checkpoint"]

FORMAT, VERSION = "xbp-checkpoint", 1
_META = "__meta__"
_NAME = re.compile(r"step-(\d+)\.npz")


# ---------------------------------------------------------------- one file

def write_checkpoint(path: str | os.PathLike[str], arrays: dict[str, Any], meta: dict[str, Any]) -> None:
    """Write `arrays` (name -> array of any backend) and the JSON-able `meta` to the `.npz` file `path`:
    a temporary file beside it, fsynced, renamed over it, and the folder fsynced."""
    target = Path(path)
    host: dict[str, Any] = {name: np.ascontiguousarray(backend.to_cpu(value))
                            for name, value in arrays.items()}
    meta = {**meta, "format": FORMAT, "version": VERSION,
            "arrays": {name: _digest(value) for name, value in host.items()}}
    host[_META] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    write_npz(target, host)
    _fsync_folder(target.parent)


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """(arrays, meta) of the checkpoint `path`, every array checked against its SHA-256; raises
    `CheckpointError` for a file that is not a whole xbp checkpoint."""
    host = read_npz(path, "checkpoint", "Resume from an older one, or start over.")
    if _META not in host:
        raise CheckpointError(f"{path}: an .npz without {_META}, not an xbp checkpoint (files of "
                              "xbp.save_params load with xbp.load_params).")
    try:
        meta = json.loads(host.pop(_META).tobytes())
    except ValueError as exc:  # JSON or UTF-8 that does not decode
        raise CheckpointError(f"{path}: its {_META} is damaged ({type(exc).__name__}: {exc}). Resume from "
                              "an older one, or start over.") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise CheckpointError(f"{path}: not an xbp checkpoint of version {VERSION}.")
    if set(host) != set(meta["arrays"]):
        raise CheckpointError(f"{path}: holds the arrays {sorted(host)} but lists {sorted(meta['arrays'])}: "
                              "the file is damaged. Resume from an older one, or start over.")
    for name, value in host.items():
        if _digest(value) != meta["arrays"][name]:
            raise CheckpointError(f"{path}: array {name!r} does not match its SHA-256 (the file is damaged). "
                                  "Resume from an older one, or start over.")
    return host, meta


def _digest(value: np.ndarray) -> dict[str, Any]:
    return {"shape": list(value.shape), "dtype": value.dtype.str, "sha256": _sha256(value)}


def _fsync_folder(folder: Path) -> None:
    """Make the rename durable (POSIX); a system that cannot open folders skips it."""
    with contextlib.suppress(OSError, AttributeError):
        handle = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(handle)
        finally:
            os.close(handle)


# ---------------------------------------------------------------- trees of arrays as JSON + arrays

def pack(tree: Any, name: str, arrays: dict[str, Any]) -> Any:
    """`tree` as JSON, each array in it moved to `arrays` under its path and replaced by {'array': path}."""
    if isinstance(tree, dict):
        return {str(key): pack(value, f"{name}/{key}", arrays) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return [pack(value, f"{name}/{index}", arrays) for index, value in enumerate(tree)]
    if backend.is_array(tree) or isinstance(tree, np.ndarray):
        arrays[name] = tree
        return {"array": name}
    return tree


def unpack(tree: Any, arrays: dict[str, np.ndarray]) -> Any:
    if isinstance(tree, dict):
        if set(tree) == {"array"}:
            return arrays[tree["array"]]
        return {key: unpack(value, arrays) for key, value in tree.items()}
    if isinstance(tree, list):
        return [unpack(value, arrays) for value in tree]
    return tree


# ---------------------------------------------------------------- a run's settings

def run_settings(net: Any, optimizer: Any, x: Any, t: Any, *, batch_size: int, seed: int | None,
                 extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """What a resumed run must share with the run that saved: the net (class, layers, state shapes,
    dtype), the optimizer and its hyperparameters, batch size, seed, and the training data (shape,
    dtype, a SHA-256 of the labels and of up to 1,000 evenly spaced samples), plus `extra`."""
    first = next(iter(net.params.values()))
    layers = {name: {"type": type(layer).__name__,
                     **{attr: getattr(layer, attr) for attr in ("dropout_ratio", "momentum", "eps")
                        if isinstance(getattr(layer, attr, None), (int, float))}}
              for name, layer in net.layers.items()}
    stride = max(1, x.shape[0] // 1000)
    labels, sample = backend.to_cpu(t), backend.to_cpu(x[::stride, ...])
    return {**(extra or {}),
            "net": {"class": type(net).__name__, "layers": layers, "dtype": dtype_name(first.dtype),
                    "weight_decay_lambda": float(getattr(net, "weight_decay_lambda", 0.0)),
                    "state": {key: list(value.shape) for key, value in net.state().items()}},
            "optimizer": {"name": type(optimizer).__name__, **optimizer.state_dict()["hyperparameters"]},
            "batch_size": batch_size, "seed": seed,
            "data": {"samples": int(x.shape[0]), "sample_shape": list(x.shape[1:]),
                     "dtype": dtype_name(x.dtype), "labels_sha256": _sha256(labels),
                     "samples_sha256": _sha256(sample)}}


def _sha256(value: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(value).data).hexdigest()  # the buffer, no copy


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out: dict[str, Any] = {}
        for key, value in tree.items():
            out.update(_flat(value, f"{prefix}{key}."))
        return out or {prefix[:-1]: {}}
    return {prefix[:-1]: tree}


def differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    old, new = _flat(saved), _flat(current)
    return [f"{key}: {old.get(key, '(none)')!r} in the checkpoint, {new.get(key, '(none)')!r} now"
            for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]


# ---------------------------------------------------------------- where checkpoints live

class Checkpoints:
    """A checkpoint file (`path` ending in `.npz`, overwritten each time) or a folder of them
    (`step-<global step>.npz`, the newest `keep` kept); `settings` adds entries (such as the data set's
    name) that a resumed run must share."""

    def __init__(self, path: str | os.PathLike[str], *, keep: int = 1,
                 settings: dict[str, Any] | None = None) -> None:
        self.path = Path(path)
        self.single = self.path.suffix == ".npz"
        if keep < 1 or (self.single and keep != 1):
            raise ValueError(f"keep must be 1 for a single checkpoint file and >= 1 for a folder, got "
                             f"{keep}; give a folder to keep several.")
        self.keep, self.settings = keep, dict(settings or {})

    def prepare(self) -> None:
        """Make the folder, and remove temporary files that a killed save left behind."""
        folder = self.path.parent if self.single else self.path
        if not self.single and self.path.exists() and not self.path.is_dir():
            raise CheckpointError(f"{self.path} is a file: give a folder for checkpoints, or a path "
                                  "ending in .npz for a single checkpoint file.")
        if self.single and not folder.is_dir():
            raise CheckpointError(f"the folder of the checkpoint {self.path} does not exist; create "
                                  "it first.")
        folder.mkdir(parents=True, exist_ok=True)
        pattern = f".{self.path.name}.*.tmp" if self.single else ".step-*.npz.*.tmp"
        for stale in folder.glob(pattern):
            stale.unlink(missing_ok=True)

    def existing(self) -> list[Path]:
        """The checkpoints present, oldest first."""
        if self.single:
            return [self.path] if self.path.exists() else []
        if not self.path.is_dir():
            return []
        found = [(int(match.group(1)), item) for item in self.path.iterdir()
                 if (match := _NAME.fullmatch(item.name))]
        return [item for _, item in sorted(found)]

    def target(self, global_step: int) -> Path:
        return self.path if self.single else self.path / f"step-{global_step:010d}.npz"

    def prune(self) -> None:
        for old in self.existing()[: -self.keep]:
            old.unlink(missing_ok=True)
