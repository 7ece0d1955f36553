"""`python -m xbp info`: xbp's version, the selected backend, and every backend it can load."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Any

import xbp
from xbp import backend
from xbp.errors import BackendError


def _devices(name: str, xp: Any) -> list[str]:
    return backend.get_adapter(name).describe_devices(xp)  # CuPy: each GPU's name and memory


def info(out: Any = sys.stdout) -> int:
    """Print what xbp can run on here; returns 0."""
    print(f"xbp {xbp.__version__} (python {sys.version.split()[0]})", file=out)
    try:
        device = backend.get_device()
        where = "" if device is None else f" (device {backend.device_label(device)})"
    except BackendError as exc:
        where = f" (cannot use the selected device: {exc})"
    print(f"selected backend: {backend.get_backend()}{where}  [XBP_BACKEND, XBP_DEVICE]", file=out)
    print("backends:", file=out)
    for name, (module_name, _) in backend.BACKENDS.items():
        try:
            xp = backend.get_namespace(name)
        except BackendError as exc:
            print(f"  {name:17} cannot load: {exc}", file=out)
            continue
        version = getattr(importlib.import_module(module_name.split(".")[0]), "__version__", "?")
        print(f"  {name:17} {version:10} devices: {', '.join(_devices(name, xp))}", file=out)
    for name, reason in backend.CANNOT_TRAIN.items():
        print(f"  {name:17} not supported: {reason}", file=out)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m xbp", description=__doc__)
    parser.add_argument("command", choices=["info"], help="what to do")
    parser.parse_args(argv)
    return info()


if __name__ == "__main__":
    sys.exit(main())
