"""One `xp` fixture over every array namespace present here; the tests are written once.

numpy and array_api_strict always run. CuPy runs where a CUDA device is present (marked `gpu`,
skipped with the reason otherwise); torch and jax.numpy where they are installed (JAX with 64-bit
arrays enabled, which the float64 gradient checks need; float32 stays the nets' default), and
`torch:cuda` (torch on its first CUDA device, marked `gpu`) where torch is installed and sees a CUDA
device. `XBP_TEST_BACKENDS=numpy,cupy,torch:cuda` limits the list (ci/gpu uses it). JAX's cases are
marked `slow` too (JAX dispatches every operation, some ten times numpy's cost on these small
arrays: they are most of the suite's time), so `ci/test -m "not slow"` is the quick run.
"""

from __future__ import annotations

import importlib.util
import os
from types import ModuleType

import pytest

# The suite picks its backends itself (the xp fixture, XBP_E2E_BACKEND): an XBP_BACKEND or XBP_DEVICE
# a user exported (the README has GPU users export one) must not change what it tests. xbp reads them
# at import, so they go before it is imported, and the children the tests start inherit none.
for _name in ("XBP_BACKEND", "XBP_DEVICE"):
    os.environ.pop(_name, None)

import xbp  # noqa: E402
from xbp.errors import BackendError  # noqa: E402

_ALL = list(xbp.backend.BACKENDS)  # every backend with an adapter (xbp/backend/registry.py)
_DEVICES = {"torch:cuda": ("torch", "cuda:0")}  # fixture id -> (backend, device)
if importlib.util.find_spec("torch") is not None:  # found without importing it
    _ALL.append("torch:cuda")


def _params() -> list:
    wanted = [n for n in os.environ.get("XBP_TEST_BACKENDS", "").split(",") if n] or _ALL
    params = []
    for name in wanted:
        marks = [pytest.mark.gpu] if name in ("cupy", *_DEVICES) else []
        if name == "jax.numpy":
            marks.append(pytest.mark.slow)
        params.append(pytest.param(name, marks=marks, id=name))
    return params


@pytest.fixture(params=_params())
def xp(request: pytest.FixtureRequest) -> ModuleType:
    """The Array API namespace of one backend, selected for new arrays while the test runs."""
    name, device = _DEVICES.get(request.param, (request.param, None))
    if name == "jax.numpy":
        _enable_jax_float64()
    try:
        namespace = xbp.get_namespace(name)
        if device is not None:
            with xbp.using_backend(name, device):  # checks the device now, to skip with the reason
                pass
    except BackendError as exc:
        if name in ("numpy", "array_api_strict"):
            raise  # these two must always run
        pytest.skip(f"{request.param} cannot load here: {exc.reason}")
    with xbp.using_backend(name, device):
        yield namespace


def _enable_jax_float64() -> None:
    """Let JAX make float64 arrays (it makes float32 ones in their place otherwise), once per run."""
    try:
        import jax
    except ImportError:
        return  # the fixture skips, saying why
    jax.config.update("jax_enable_x64", True)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """The skips counted by reason, after everything else: what this run did not test, at a glance."""
    terminal = config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None:
        return
    reasons: dict[str, int] = {}
    for report in terminal.stats.get("skipped", []):
        if isinstance(report.longrepr, tuple):  # (file, line, "Skipped: reason")
            reason = str(report.longrepr[2]).removeprefix("Skipped: ")
            reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        terminal.write_sep("-", f"{sum(reasons.values())} skipped, by reason")
        for reason, count in sorted(reasons.items(), key=lambda item: (-item[1], item[0])):
            terminal.write_line(f"{count:5d}  {reason}")
