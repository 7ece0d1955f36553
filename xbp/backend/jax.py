"""JAX (jax.numpy): immutable arrays on JAX's devices, which JAX follows by itself.

An update makes a new array (`param -= g` rebinds the name), so updates reach a layer through the
net's bindings. JAX makes float32 where float64 is asked for unless 64-bit arrays are enabled, which
`checked_dtype` turns into an error with this fix. Random numbers take the portable path.
"""

from __future__ import annotations

import sys
from typing import Any

from array_api_compat import is_jax_array

from xbp.backend.adapter import Adapter

__all__ = ["ADAPTER", "JaxAdapter"]


class JaxAdapter(Adapter):
    """jax.numpy, JAX's own Array API namespace."""

    name = "jax.numpy"
    module = "jax.numpy"
    install = 'pip install jax (or "jax[cuda13]" for an NVIDIA GPU)'
    aliases = ("jax",)
    dtype_hint = ("For jax.numpy, enable 64-bit arrays before making any: "
                  "jax.config.update('jax_enable_x64', True) or JAX_ENABLE_X64=1.")

    def owns(self, obj: Any) -> bool:
        device_type = getattr(sys.modules.get("jax"), "Device", None)  # a jaxlib type
        return device_type is not None and (is_jax_array(obj) or isinstance(obj, device_type))


ADAPTER = JaxAdapter()
