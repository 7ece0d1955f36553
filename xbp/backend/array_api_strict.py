"""array-api-strict: the standard and nothing more, on pretend devices ('CPU_DEVICE', 'device1', ...).

It refuses what the standard does not allow, which is what the test suite runs it for; its arrays
refuse `__array__` off its CPU device, so they reach the host through DLPack. It needs no device scope
and draws its random numbers on the portable path.
"""

from __future__ import annotations

import sys
from typing import Any

from array_api_compat import is_array_api_strict_namespace

from xbp.backend.adapter import Adapter

__all__ = ["ADAPTER", "ArrayApiStrictAdapter"]


class ArrayApiStrictAdapter(Adapter):
    """array_api_strict, its own namespace."""

    name = "array_api_strict"
    module = "array_api_strict"
    install = 'pip install "xbp[test]" (or: pip install array-api-strict)'
    aliases = ("strict", "array-api-strict")

    def owns(self, obj: Any) -> bool:
        strict = sys.modules.get("array_api_strict")
        if strict is None:
            return False
        device_type = getattr(strict, "Device", None)
        if device_type is not None and isinstance(obj, device_type):
            return True
        namespace = getattr(obj, "__array_namespace__", None)
        try:
            return namespace is not None and is_array_api_strict_namespace(namespace())
        except Exception:  # another library's array, whose namespace cannot be had here
            return False

    def label(self, dev: Any) -> str:
        return str(dev).split("'")[1]  # array_api_strict.Device('device1') -> device1


ADAPTER = ArrayApiStrictAdapter()
