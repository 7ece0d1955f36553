"""What a GPU backend needs, checked when it is selected: now in the CUDA adapters.

`probe` is `xbp.backend.adapter.probe_kernels`; `CUDA_EXTRAS`, `driver_library_error` and `explain`
live in `xbp.backend.cupy`. This module keeps the old names importable.
"""

from __future__ import annotations

from xbp.backend.adapter import probe_kernels as probe
from xbp.backend.cupy import CUDA_EXTRAS, driver_library_error, explain

__all__ = ["CUDA_EXTRAS", "driver_library_error", "explain", "probe"]
