"""Reading IDX files, the format of MNIST and Fashion-MNIST, with every field checked.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the values in C order. The data sets here use two
kinds: 0x00000801 (uint8 labels, 1-D) and 0x00000803 (uint8 images, N x rows x cols).

The header is never trusted for memory: the size it claims is compared with the expected shape
(for the data sets' known file names), with a cap, and with the bytes actually there before
anything is kept, and a gzip stream is decompressed at most one byte past the expected size,
so a lying header or a gzip bomb fails fast with a DatasetError naming the file.
"""

from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from xbp.errors import DatasetError

LABELS_MAGIC = 0x00000801
IMAGES_MAGIC = 0x00000803
NDIM = {LABELS_MAGIC: 1, IMAGES_MAGIC: 3}

#: Shapes of the files of MNIST and Fashion-MNIST (same names in both), checked by name.
KNOWN_SHAPES: dict[str, tuple[int, ...]] = {
    "train-images-idx3-ubyte": (60000, 28, 28),
    "train-labels-idx1-ubyte": (60000,),
    "t10k-images-idx3-ubyte": (10000, 28, 28),
    "t10k-labels-idx1-ubyte": (10000,),
}

#: Largest payload read from a file whose name is not one of KNOWN_SHAPES.
MAX_BYTES = 1 << 30
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20


def idx_header(array: np.ndarray) -> bytes:
    """The IDX header that `array` (uint8, 1-D or 3-D) was read with."""
    magic = LABELS_MAGIC if array.ndim == 1 else IMAGES_MAGIC
    return struct.pack(f">I{array.ndim}I", magic, *array.shape)


def expected_shape_for(name: str) -> tuple[int, ...] | None:
    """The known shape of a data set file from its name ('t10k-images-idx3-ubyte.gz'), or None."""
    return KNOWN_SHAPES.get(Path(name).name.removesuffix(".gz"))


def read_idx(path: str | os.PathLike[str], expected_shape: tuple[int, ...] | None = None, *,
             name: str | None = None, num_classes: int | None = 10,
             max_bytes: int = MAX_BYTES) -> np.ndarray:
    """Read a (gzipped or raw) IDX file of uint8 labels or images into a numpy array.

    `expected_shape` defaults to the known shape of the file's name (see KNOWN_SHAPES); `name`
    is what error messages call the file (default: `path`); labels must be below `num_classes`.
    Every problem raises DatasetError naming the file.
    """
    path = Path(path)
    name = str(path) if name is None else name
    if expected_shape is None:
        expected_shape = expected_shape_for(name)
    try:
        with open(path, "rb") as raw:
            start = raw.read(2)
            raw.seek(0)
            if start == GZIP_MAGIC:
                with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                    array = _parse(stream, name, expected_shape, max_bytes, None)
            elif name.endswith(".gz"):
                raise DatasetError(f"{name}: not a gzip file ({_describe(raw.read(64))})")
            else:
                array = _parse(raw, name, expected_shape, max_bytes, os.fstat(raw.fileno()).st_size)
    except EOFError as err:
        raise DatasetError(f"{name}: gzip stream cut short (truncated download?)") from err
    except (OSError, zlib.error) as err:  # gzip.BadGzipFile (bad header, CRC) is an OSError
        raise DatasetError(f"{name}: cannot read it: {err}") from err
    if array.ndim == 1 and num_classes is not None and array.size and array.max() >= num_classes:
        index = int(np.flatnonzero(array >= num_classes)[0])
        raise DatasetError(f"{name}: label {array[index]} at index {index} is not a valid class "
                           f"(expected 0..{num_classes - 1})")
    return array


def _describe(start: bytes) -> str:
    """A hint at what a file that should be gzip is instead."""
    if start.lstrip().lower().startswith((b"<!doctype html", b"<html", b"<?xml")):
        return "it is an HTML/XML page, probably an error page saved by a download"
    return f"it starts with {start[:8].hex(' ')}, not 1f 8b" if start else "it is empty"


def _parse(stream: BinaryIO | gzip.GzipFile, name: str, expected_shape: tuple[int, ...] | None,
           max_bytes: int, file_size: int | None) -> np.ndarray:
    """Parse header and payload from `stream`; `file_size` is known for raw files only."""
    head = stream.read(4)
    magic = int.from_bytes(head, "big") if len(head) == 4 else None
    if magic not in NDIM:
        found = f"0x{magic:08x}" if magic is not None else f"missing (only {len(head)} bytes)"
        raise DatasetError(f"{name}: not an IDX file of uint8 labels or images: magic number "
                           f"{found}, expected 0x00000801 (labels) or 0x00000803 (images)")
    ndim = NDIM[magic]
    dims_bytes = stream.read(4 * ndim)
    if len(dims_bytes) < 4 * ndim:
        raise DatasetError(f"{name}: header cut short ({4 + len(dims_bytes)} of {4 + 4 * ndim} "
                           "bytes)")
    shape = struct.unpack(f">{ndim}I", dims_bytes)
    if expected_shape is not None and shape != tuple(expected_shape):
        raise DatasetError(f"{name}: dimensions {_dims(shape)} in the header, expected "
                           f"{_dims(expected_shape)}")
    size = math.prod(shape)
    header_size = 4 + 4 * ndim
    if expected_shape is None and size > max_bytes:
        raise DatasetError(f"{name}: header claims {_dims(shape)} = {size} bytes, more than the "
                           f"{max_bytes}-byte limit for a file of unknown shape")
    if file_size is not None and file_size != header_size + size:
        raise DatasetError(_length_error(name, shape, header_size + size, file_size))
    payload = bytearray()
    while len(payload) <= size:  # read one byte past the end to catch trailing data
        chunk = stream.read(min(CHUNK, size + 1 - len(payload)))
        if not chunk:
            break
        payload += chunk
    if len(payload) != size:
        actual = header_size + len(payload)
        raise DatasetError(_length_error(name, shape, header_size + size, actual))
    return np.frombuffer(payload, dtype=np.uint8).reshape(shape)


def _dims(shape: tuple[int, ...]) -> str:
    return " x ".join(str(d) for d in shape)


def _length_error(name: str, shape: tuple[int, ...], expected: int, actual: int) -> str:
    says = f"the header says {_dims(shape)}, which is {expected} bytes of IDX"
    if actual < expected:
        return f"{name}: too short: {says}, but there are only {actual} (truncated?)"
    return f"{name}: too long: {says}, but more data follows"
