"""Downloading data set files from a list of mirrors, and checking them against pinned hashes.

Each file has a FileSpec: its name, the sha256 of its .gz as served upstream, the sha256 of the
decompressed IDX payload where known, and its shape. A file is accepted when either hash
matches, so a mirror's exact copy and a system package's recompressed copy both pass, and
anything else is refused.

A download goes into a temporary file next to its destination, is checked, and only then
renamed into place (`os.replace` is atomic), so an interrupted or corrupted transfer never
leaves a file that a later run would trust. Connection errors, cut-off transfers and HTTP 5xx
are retried with exponential backoff; a 404 or a file that fails its check moves on to the next
mirror. When every mirror fails, one DownloadError lists each URL with its error.
"""

from __future__ import annotations

import hashlib
import http.client
import math
import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO
from urllib.error import HTTPError, URLError
from urllib.request import Request, urlopen

import numpy as np

from xbp.datasets.idx import idx_header, read_idx
from xbp.errors import DatasetError, DownloadError
from xbp.params_io import write_atomically
from xbp.progress import ProgressBar

ATTEMPTS = 3  # per mirror, for errors worth retrying
BACKOFF_S = 0.5  # waits BACKOFF_S, 2 * BACKOFF_S, ... between attempts
TIMEOUT_S = 30.0  # per blocking socket operation
CHUNK = 1 << 16
USER_AGENT = "xbp (+https://pypi.org/project/xbp/)"


@dataclass(frozen=True)
class FileSpec:
    """One file of a data set: `name` without '.gz', pinned hashes (None: unknown), shape."""

    name: str
    gz_sha256: str | None
    payload_sha256: str | None
    shape: tuple[int, ...]

    @property
    def filename(self) -> str:
        """The name of the file as mirrors serve it."""
        return self.name + ".gz"

    @property
    def payload_size(self) -> int:
        """Bytes of the decompressed IDX file: header plus one byte per value."""
        return 4 + 4 * len(self.shape) + math.prod(self.shape)


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The sha256 of the file's bytes, in hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(CHUNK * 16):
            digest.update(block)
    return digest.hexdigest()


def payload_sha256(array: np.ndarray) -> str:
    """The sha256 of the decompressed IDX file that `array` was read from, in hex."""
    digest = hashlib.sha256(idx_header(array))
    digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def read_verified(path: str | os.PathLike[str], spec: FileSpec, *,
                  name: str | None = None) -> np.ndarray:
    """Read the IDX file at `path` and return it if its .gz or its payload matches `spec`'s pin."""
    name = str(path) if name is None else name
    if spec.gz_sha256 is None and spec.payload_sha256 is None:
        raise DatasetError(f"{name}: no checksum is pinned for {spec.name}, refusing to trust it")
    try:
        file_hash = sha256_file(path)
    except OSError as err:
        raise DatasetError(f"{name}: cannot read it: {err}") from err
    array = read_idx(path, spec.shape, name=name)
    if file_hash == spec.gz_sha256:
        return array
    data_hash = payload_sha256(array)
    if data_hash == spec.payload_sha256:
        return array
    expected = [f".gz sha256 {spec.gz_sha256}"] if spec.gz_sha256 else []
    if spec.payload_sha256:
        expected.append(f"payload sha256 {spec.payload_sha256}")
    unknown = "" if spec.payload_sha256 else (
        " (the payload hash of this file is not pinned: only its original .gz is accepted)")
    raise DatasetError(f"{name}: checksum mismatch: file sha256 {file_hash}, payload sha256 "
                       f"{data_hash}; expected {' or '.join(expected)}{unknown}")


class _RetryableError(Exception):
    """A failure worth trying the same URL again for."""


class _MirrorError(Exception):
    """A failure that trying the same URL again will not fix."""


def download_file(spec: FileSpec, mirrors: Sequence[str], folder: str | os.PathLike[str], *,
                  attempts: int = ATTEMPTS, backoff_s: float | None = None,
                  timeout_s: float = TIMEOUT_S, hint: str = "", progress: bool = True) -> Path:
    """Fetch `spec.filename` from the first mirror (a base URL) that serves a verified copy.

    Returns `folder / spec.filename`. Raises DownloadError (a DatasetError) listing every URL
    tried, followed by `hint`, when no mirror works. `backoff_s` defaults to the module's BACKOFF_S.
    """
    backoff_s = BACKOFF_S if backoff_s is None else backoff_s
    folder = Path(folder)
    destination = folder / spec.filename
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise DatasetError(f"cannot create {folder} to download {spec.filename} into: "
                           f"{err}") from err
    failures = []
    for mirror in mirrors:
        url = mirror.rstrip("/") + "/" + spec.filename
        reason = "not tried (attempts < 1)"
        for attempt in range(1, attempts + 1):
            try:
                _fetch(url, spec, destination, timeout_s, progress)
                return destination
            except _RetryableError as err:
                reason = f"{err} ({attempt} attempts)" if attempt > 1 else str(err)
                if attempt < attempts:
                    time.sleep(backoff_s * 2 ** (attempt - 1))
            except _MirrorError as err:
                reason = str(err)
                break
        failures.append((url, reason))
    tried = "\n".join(f"  {url}: {reason}" for url, reason in failures) or "  (no mirrors configured)"
    message = f"could not download {spec.filename} into {folder}; tried:\n{tried}"
    raise DownloadError(message + (f"\n{hint}" if hint else ""), tuple(failures))


def _fetch(url: str, spec: FileSpec, destination: Path, timeout_s: float,
           progress: bool) -> None:
    """One attempt: download `url` into a temporary file, verify it, rename it to destination."""
    def verify(temp: Path) -> None:
        try:
            read_verified(temp, spec, name=spec.filename)
        except DatasetError as err:
            raise _MirrorError(f"refused the downloaded file: {err}") from err

    try:
        write_atomically(destination, lambda out: _transfer(url, out, spec, timeout_s, progress),
                         check=verify)
    except (FileNotFoundError, PermissionError) as err:  # the folder, not the mirror
        raise DatasetError(f"cannot write into {destination.parent}: {err}") from err


def _transfer(url: str, out: BinaryIO, spec: FileSpec, timeout_s: float,
              progress: bool) -> None:
    """Copy the body of `url` into `out`; network failures become _RetryableError/_MirrorError."""
    # A gzip of incompressible data is a little larger than the data; anything far larger is
    # not the file.
    limit = spec.payload_size + spec.payload_size // 100 + (1 << 16)
    request = Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urlopen(request, timeout=timeout_s) as response:
            length = response.headers.get("Content-Length", "")
            total = int(length) if length.isdigit() else None
            if total is not None and total > limit:
                raise _MirrorError(f"server announces {total} bytes, more than the {limit} "
                                   f"expected at most for {spec.filename}")
            received = 0
            with ProgressBar(total, spec.filename, "B", enabled=progress) as bar:
                while block := response.read(CHUNK):
                    received += len(block)
                    if received > limit:
                        raise _MirrorError(f"more than the {limit} bytes expected at most")
                    _write(out, block)
                    bar.update(len(block))
    except HTTPError as err:
        err.close()
        reason = f"HTTP {err.code} {err.reason}"
        raise (_RetryableError(reason) if err.code >= 500 else _MirrorError(reason)) from None
    except URLError as err:
        cause = err.reason
        # An unknown host name will not resolve on a retry; a temporary DNS failure might.
        if isinstance(cause, socket.gaierror) and cause.errno != socket.EAI_AGAIN:
            raise _MirrorError(str(cause)) from None
        raise _RetryableError(str(cause)) from None
    except (OSError, http.client.HTTPException) as err:  # reset, timeout, bad status line
        raise _RetryableError(f"{type(err).__name__}: {err}") from None
    if total is not None and received < total:
        raise _RetryableError(f"connection closed after {received} of {total} bytes")


def _write(out: BinaryIO, block: bytes) -> None:
    """Write a block; a local failure (disk full) is not the mirror's fault and stops it all."""
    try:
        out.write(block)
    except OSError as err:
        raise DatasetError(f"cannot write the download to disk: {err}") from err
