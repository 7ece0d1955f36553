"""torch: tensors on the CPU or on CUDA devices ('cpu', 'cuda:0'), which torch follows by itself.

torch needs no device scope: a kernel runs where its tensors are. A CUDA device is checked when it is
chosen (it must be one `torch.cuda.device_count()` counts, and run a matmul and an elementwise kernel);
on CUDA, Dropout's masks are drawn by a `torch.Generator` on the tensor's device, while a CPU tensor
takes the portable path (numpy's generator on the host), so that it draws what numpy draws.
"""

from __future__ import annotations

import sys
from types import ModuleType
from typing import Any

from array_api_compat import is_torch_array

from xbp.backend.adapter import Adapter
from xbp.errors import BackendError

__all__ = ["ADAPTER", "TorchAdapter"]


class TorchAdapter(Adapter):
    """torch, through array-api-compat's torch namespace."""

    name = "torch"
    module = "torch"
    install = "pip install torch (see pytorch.org for the CUDA build)"
    aliases = ("pytorch",)
    generator_kind = "torch"  # a CUDA generator's state; the CPU draws on the host

    def owns(self, obj: Any) -> bool:
        torch = sys.modules.get("torch")
        device_type = getattr(torch, "device", None)
        return device_type is not None and (is_torch_array(obj) or isinstance(obj, device_type))

    def needs_check(self, dev: Any) -> bool:
        return str(dev).startswith("cuda")  # only GPUs load libraries at the first kernel

    def hint(self, exc: BaseException) -> str:
        return ("Check that this torch is a CUDA build (torch.version.cuda) and that "
                "torch.cuda.is_available(); or choose XBP_BACKEND=numpy to run on the CPU.")

    # -- devices

    def devices(self, xp: ModuleType) -> list[Any]:
        torch = self.import_module()  # not torch's own list: it probes deprecated device types, with warnings
        cuda = [torch.device("cuda", i) for i in range(torch.cuda.device_count())]
        return [torch.device("cpu"), *cuda]

    def parse_device(self, text: str) -> Any:
        """The torch device `text` names (torch lists only the devices it has made); a CUDA device must
        be one torch.cuda.device_count() sees."""
        torch = self.import_module()
        try:
            dev = torch.device(text)
        except (RuntimeError, TypeError):
            return None
        if dev.type == "cuda":
            count = torch.cuda.device_count()
            if count == 0 or (dev.index is not None and dev.index >= count):
                seen = "no CUDA device" if count == 0 else f"CUDA devices cuda:0 to cuda:{count - 1}"
                reason = (f"torch sees {seen} here (torch {torch.__version__}, "
                          f"CUDA build {torch.version.cuda})")
                raise BackendError(f"backend 'torch' has no device {text!r}: {reason}. "
                                   "Choose a device torch.cuda.device_count() counts, or 'cpu'.",
                                   reason=f"torch has no device {text!r}: {reason}")
        return dev

    def describe(self, dev: Any) -> str | None:
        if dev is None or not str(dev).startswith("cuda"):
            return None
        return f"{self.import_module().cuda.get_device_name(dev)} ({dev})"

    # -- arrays

    def to_host(self, x: Any) -> Any:
        return x.detach().cpu().numpy()

    # -- torch.Generator on a CUDA device

    def generator_device(self, like: Any) -> Any:
        return like.device if like.device.type == "cuda" else None

    def make_generator(self, dev: Any, seed: int | None) -> Any:
        generator = self.import_module().Generator(device=dev)
        if seed is None:
            generator.seed()  # fresh entropy, as numpy's default_rng(None)
        else:
            generator.manual_seed(seed)
        return generator

    def uniform(self, generator: Any, shape: tuple[int, ...], like: Any, xp: ModuleType, dev: Any) -> Any:
        return self.import_module().rand(shape, generator=generator, dtype=like.dtype, device=dev)

    def generator_state(self, generator: Any) -> Any:
        """`get_state()`: a CPU uint8 tensor, also on CUDA (torch.Generator has no `bit_generator`)."""
        return generator.get_state()

    def set_generator_state(self, generator: Any, state: Any, dev: Any) -> None:
        """`set_state` takes the CPU uint8 tensor `get_state` gave, for a CUDA generator too."""
        import numpy as np

        from xbp.backend.arrays import to_cpu

        bits = np.array(to_cpu(state), dtype=np.uint8)  # a writable copy for from_numpy
        generator.set_state(self.import_module().from_numpy(bits))


ADAPTER = TorchAdapter()
