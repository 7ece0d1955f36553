"""Seeded random numbers drawn where the arrays live, by generators the libraries' adapters make.

The standard has no random numbers: each adapter that draws on its device says how to make a
generator there, draw with it, and copy and restore its state; every other library takes the portable
path, numpy's generator on the host, whose numbers are then copied to the array's device.
"""

from __future__ import annotations

import copy
from typing import Any

from xbp.backend import numpy as host
from xbp.backend.adapter import Adapter
from xbp.backend.arrays import array_namespace, device
from xbp.backend.registry import ADAPTERS, PORTABLE, adapter_of

__all__ = ["DeviceRNG"]

_PORTABLE = ("portable", "host")  # the key of the portable path's generator


class DeviceRNG:
    """Seeded uniform random numbers in [0, 1), drawn on the device of the array they are for.

    Randomness inside training (dropout masks) is drawn where the arrays live, so a GPU step costs no
    host-to-device copy: CuPy draws with `cupy.random.default_rng(seed)` on the array's GPU, torch on
    CUDA with a `torch.Generator` on the tensor's device, numpy with `numpy.random.default_rng(seed)`.
    Any other library (torch on the CPU too) takes the portable path: a draw on the host with
    `numpy.random.default_rng(seed)`, copied to the array's device (`portable=True` forces that path
    everywhere). The numpy and portable paths give the same numbers for one seed on any machine.
    CuPy's and torch's CUDA generators give other numbers, the same from run to run on the same GPU
    model (CuPy's state grows with the GPU's multiprocessors, so another model draws another
    sequence: docs/notes/cuda.md). One generator is kept per library and device, each started from
    `seed` (None: fresh entropy).

    A copy (`copy.deepcopy`, as `Net.astype` and `gradient_check` make) starts every stream afresh
    from `seed`, on every library alike: a GPU generator's state lives on its device behind a lock that
    cannot be copied, so none is copied, and the copy's first numbers are the ones the original drew first.
    """

    def __init__(self, seed: int | None = None, *, portable: bool = False) -> None:
        self.seed = seed
        self.portable = portable
        self._generators: dict[tuple[str, str], Any] = {}

    def __deepcopy__(self, memo: dict[int, Any]) -> DeviceRNG:
        clone = DeviceRNG(copy.deepcopy(self.seed, memo), portable=self.portable)
        memo[id(self)] = clone
        return clone

    def uniform(self, shape: tuple[int, ...], *, like: Any) -> Any:
        """An array of `shape` of numbers in [0, 1), with the dtype and on the device of `like`."""
        xp = array_namespace(like)
        if not xp.isdtype(like.dtype, "real floating"):
            raise ValueError(f"DeviceRNG.uniform draws floating-point numbers; `like` has dtype "
                             f"{like.dtype}: pass an array of float32 or float64.")
        shape = tuple(int(n) for n in shape)
        adapter, dev = self._drawer(like)
        if adapter is not None:
            return adapter.uniform(self._generator(adapter, dev), shape, like, xp, dev)
        draw = host.ADAPTER.random(self._portable_generator(), shape, like.dtype == xp.float32)
        return xp.asarray(draw, dtype=like.dtype, device=device(like))

    def _drawer(self, like: Any) -> tuple[Adapter | None, Any]:
        """(the adapter that draws for `like`, on which device), or (None, None) for the portable path."""
        adapter = PORTABLE if self.portable else adapter_of(like)
        dev = adapter.generator_device(like)
        return (None, None) if dev is None else (adapter, dev)

    def _generator(self, adapter: Adapter, dev: Any) -> Any:
        key = (adapter.name, adapter.label(dev))
        if key not in self._generators:
            self._generators[key] = adapter.make_generator(dev, self.seed)
        return self._generators[key]

    def _portable_generator(self) -> Any:
        if _PORTABLE not in self._generators:
            self._generators[_PORTABLE] = host.ADAPTER.make_generator(None, self.seed)
        return self._generators[_PORTABLE]

    # -- checkpoints: the streams continue where they stopped (xbp.resume)

    def state_dict(self) -> dict[str, Any]:
        """The seed and each generator's state, keyed 'library/device': numpy's bit-generator state (a
        dict of ints), CuPy's cuRAND states (a device array of bytes), torch's (a CPU tensor of bytes)."""
        return {"seed": self.seed, "generators": {
            f"{library}/{label}": ADAPTERS.get(library, host.ADAPTER).generator_state(generator)
            for (library, label), generator in self._generators.items()}}

    def load_state_dict(self, state: dict[str, Any], *, like: Any) -> bool:
        """Continue the stream `state_dict` saved, for arrays like `like`. The numpy and portable
        generators are one kind (numpy's PCG64 on the host), CuPy's and torch's CUDA ones two others:
        a stream of another kind cannot continue here, so the draws restart from the seed and this
        returns False."""
        self.seed, self._generators = state["seed"], {}
        adapter, dev = self._drawer(like)
        kind = host.ADAPTER.generator_kind if adapter is None else adapter.generator_kind
        saved = [value for key, value in state["generators"].items() if _kind_of_key(key) == kind]
        if len(saved) != 1:
            return not state["generators"]  # nothing drawn yet: starting from the seed is continuing
        if adapter is None:
            host.ADAPTER.set_generator_state(self._portable_generator(), saved[0], None)
        else:
            adapter.set_generator_state(self._generator(adapter, dev), saved[0], dev)
        return True


def _kind_of_key(key: str) -> str:
    """The kind of generator a `state_dict` key names: 'cupy', 'torch' (CUDA) or 'host' (numpy's PCG64)."""
    library = key.split("/", 1)[0]
    return ADAPTERS[library].generator_kind if library in ADAPTERS else host.ADAPTER.generator_kind
