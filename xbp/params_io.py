"""Saving and loading parameters: `.npz` files, host arrays, no pickles, no half-written files.

`save_params` copies every array to the host and writes an `.npz` with `write_atomically`: to a
temporary file beside the target, fsynced, then renamed into place, so an interrupted save never
leaves a file that looks whole. `load_params` reads with `read_npz` (`allow_pickle=False`, every
failure explained) and makes the arrays on the selected backend: save on a GPU, load on a CPU.
Checkpoints are written and read through the same `write_npz` and `read_npz`.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from xbp import backend
from xbp.errors import CheckpointError

__all__ = ["dtype_name", "load_params", "read_npz", "save_params", "write_atomically", "write_npz"]


def save_params(path: str | os.PathLike[str], params: dict[str, Any]) -> None:
    """Write `params` (name -> array of any backend) to the `.npz` file `path`, atomically."""
    write_npz(path, {name: backend.to_cpu(value) for name, value in params.items()})


def load_params(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read the `.npz` file `path` into arrays on the selected backend (dtypes kept)."""
    host = read_npz(path, "parameter file", "Save it with xbp.save_params.")
    if not host:
        raise CheckpointError(f"{path}: holds no arrays; expected parameters written by xbp.save_params.")
    return {name: backend.asarray(value) for name, value in host.items()}


def write_npz(path: str | os.PathLike[str], host: dict[str, np.ndarray]) -> None:
    """Write the host arrays `host` to the `.npz` file `path` with `write_atomically`."""
    write_atomically(path, lambda file: np.savez(file, **host))  # type: ignore[arg-type]  # numpy's stub


def read_npz(path: str | os.PathLike[str], kind: str, fix: str) -> dict[str, np.ndarray]:
    """Every array of the `.npz` file `path`, read whole onto the host without pickles.

    A file that is not one (a single `.npy`, truncated, corrupt, or holding objects) raises
    `CheckpointError` saying so, that it is no readable `kind` (such as "checkpoint"), and `fix`.
    """
    try:
        with open(path, "rb") as file:  # numpy leaves its own handle open when a zip is truncated
            archive = np.load(file, allow_pickle=False)
            if not isinstance(archive, np.lib.npyio.NpzFile):
                raise CheckpointError(f"{path}: a single .npy array, not an .npz {kind}. {fix}")
            with archive:
                return {name: archive[name] for name in archive.files}
    except (FileNotFoundError, CheckpointError):
        raise
    except ValueError as exc:  # a damaged header, or object arrays, which need pickles
        raise CheckpointError(f"{path}: not a plain {kind} of numeric arrays ({exc}); xbp never loads "
                              f"pickles. {fix}") from exc
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise CheckpointError(f"{path}: not a readable .npz {kind}, or truncated "
                              f"({type(exc).__name__}: {exc}). {fix}") from exc


def write_atomically(path: str | os.PathLike[str], write: Callable[[BinaryIO], object], *,
                     check: Callable[[Path], object] | None = None) -> None:
    """Call `write` on a temporary file beside `path`, fsync it, `check` it by its path (a download's
    checksum; raise to refuse it), then rename it over `path`, so a crash at any instant leaves the old
    file or the new one whole, never half of one; on any error the temporary file is removed and
    `path` is left as it was."""
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise FileNotFoundError(f"cannot write {target}: its folder {folder} does not exist; create it "
                                f"first (mkdir -p {folder}) or choose another path.")
    handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as file:
            write(file)
            file.flush()
            os.fsync(file.fileno())
        if check is not None:
            check(Path(temporary))
        os.chmod(temporary, 0o666 & ~_umask())  # mkstemp's file is private; an ordinary open's is not
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def _umask() -> int:
    """The process's umask (read by setting it, then set back at once)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def dtype_name(dtype: Any) -> str:
    """A dtype's name without its library: float32 for numpy's, torch.float32, array_api_strict.float32."""
    return str(dtype).rsplit(".", 1)[-1]
