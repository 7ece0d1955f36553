"""Test helpers: small generated IDX files with their hashes, and a local HTTP mirror.

`TinySet` is a data set shaped like MNIST but with a few images, whose FileSpecs pin the hashes
of the generated files, so tests can swap it in for the real pins. `Mirror` is a
ThreadingHTTPServer on 127.0.0.1 that serves files per path and can be told to misbehave
(404, 5xx, cut-off transfers, HTML error pages) request by request.
"""

from __future__ import annotations

import gzip
import hashlib
import struct
import threading
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np

from xbp.datasets.download import FileSpec

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
         "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
HTML_PAGE = b"<!DOCTYPE html>\n<html><body><h1>503 Service Unavailable</h1></body></html>\n"


def idx_bytes(array: np.ndarray, magic: int | None = None) -> bytes:
    """The uncompressed IDX file of a uint8 array (magic 0x801 for 1-D, 0x803 otherwise)."""
    if magic is None:
        magic = 0x00000801 if array.ndim == 1 else 0x00000803
    header = struct.pack(f">I{array.ndim}I", magic, *array.shape)
    return header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def gz(data: bytes) -> bytes:
    """Deterministic gzip of `data`."""
    return gzip.compress(data, mtime=0)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class TinySet:
    """Four generated files named like MNIST's: arrays by name, .gz bytes by name, pinned specs."""

    arrays: dict[str, np.ndarray]
    gz: dict[str, bytes]
    specs: tuple[FileSpec, FileSpec, FileSpec, FileSpec]

    def write(self, folder: Path, names: tuple[str, ...] = NAMES) -> Path:
        """Write the .gz files of `names` into `folder` (created) and return it."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            (folder / f"{name}.gz").write_bytes(self.gz[name])
        return folder


def tiny_set(seed: int = 0, n_train: int = 12, n_test: int = 6) -> TinySet:
    """A TinySet of random 28x28 images and labels 0..9."""
    rng = np.random.default_rng(seed)
    arrays = {
        NAMES[0]: rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        NAMES[1]: rng.integers(0, 10, n_train, dtype=np.uint8),
        NAMES[2]: rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        NAMES[3]: rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    arrays[NAMES[0]][0, 0, 0], arrays[NAMES[0]][0, 0, 1] = 0, 255  # the full range occurs
    raw = {name: idx_bytes(array) for name, array in arrays.items()}
    gzipped = {name: gz(data) for name, data in raw.items()}
    specs = tuple(FileSpec(name, sha256(gzipped[name]), sha256(raw[name]), arrays[name].shape)
                  for name in NAMES)
    return TinySet(arrays, gzipped, specs)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Reply:
    """One HTTP response: status, body, and the Content-Length announced (default: len(body))."""

    status: int = 200
    body: bytes = b""
    length: int | None = None


@dataclass
class Mirror:
    """A local HTTP server; `script(path, *replies)` sets the replies to successive requests."""

    scripts: dict[str, list[Reply]] = field(default_factory=dict)
    hits: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        mirror = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = mirror._next(self.path)
                self.send_response(reply.status)
                length = len(reply.body) if reply.length is None else reply.length
                self.send_header("Content-Length", str(length))
                self.end_headers()
                self.wfile.write(reply.body)
                self.close_connection = True  # a short body then ends with the connection

            def log_message(self, *args: object) -> None:  # keep the test output quiet
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever,
                                       kwargs={"poll_interval": 0.01})
        self.thread.start()

    def url(self, prefix: str) -> str:
        """The base URL of a mirror folder `prefix` on this server."""
        return f"http://127.0.0.1:{self.server.server_port}/{prefix}/"

    def script(self, path: str, *replies: Reply) -> None:
        """Serve `replies` in turn at `path` ('/a/file.gz'); the last one repeats."""
        self.scripts[path] = list(replies)

    def serve_set(self, prefix: str, tiny: TinySet) -> None:
        """Serve every file of `tiny` correctly under `prefix`."""
        for name, data in tiny.gz.items():
            self.script(f"/{prefix}/{name}.gz", Reply(200, data))

    def _next(self, path: str) -> Reply:
        self.hits[path] += 1
        replies = self.scripts.get(path)
        if not replies:
            return Reply(404, b"not found")
        return replies.pop(0) if len(replies) > 1 else replies[0]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()

    def __enter__(self) -> Mirror:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def refused_url(prefix: str) -> str:
    """A base URL on 127.0.0.1 where nothing listens (connection refused)."""
    with Mirror() as mirror:
        url = mirror.url(prefix)
    return url
