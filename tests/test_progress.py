"""xbp.progress: one clean line where the output is not a terminal, an updated display in a notebook.

The real Jupyter kernel's view of the bar is checked by tests/e2e/test_notebook.py, which runs fit in
examples/ch05.ipynb.
"""

from __future__ import annotations

import io
from typing import Any

import pytest

import xbp.progress
from tests._extras import needs_test_extra
from xbp.progress import ProgressBar


class FakeCell:
    """Stands in for the display handle of a Jupyter cell's output: keeps every update."""

    def __init__(self) -> None:
        self.updates: list[dict[str, str]] = []

    def update(self, bundle: dict[str, str], raw: bool = False) -> None:
        assert raw
        self.updates.append(bundle)


def fake_clock(monkeypatch: pytest.MonkeyPatch, times: list[float]) -> None:
    clock = iter(times)
    monkeypatch.setattr("xbp.progress.time.monotonic", lambda: next(clock))


def test_not_a_terminal_gets_one_line_at_the_end_without_carriage_returns(
        capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressBar(600, desc="epoch 1/2", unit=" steps") as bar:  # stderr, captured: not a terminal
        for _ in range(600):
            bar.update()
        assert capsys.readouterr().err == ""  # nothing while it runs
    err = capsys.readouterr().err
    assert "\r" not in err and err.count("\n") == 1 and err.endswith("\n")
    assert err.startswith("epoch 1/2: 100% 600/600 steps [")


def test_in_a_notebook_one_display_is_updated_in_place(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    cell = FakeCell()
    monkeypatch.setattr(xbp.progress, "_cell_output", lambda: cell)
    fake_clock(monkeypatch, [0.0, 0.05, 0.2, 0.5, 2.0])
    with ProgressBar(4, "epoch <1>") as bar:  # starts at 0.0
        bar.update()  # at 0.05: too soon, no redraw
        bar.update()  # at 0.2: redraw
        bar.set_postfix("loss=0.5")
        bar.update(2)  # at 0.5: redraw; closing at 2.0 draws the final line
    assert [update["text/plain"] for update in cell.updates] == [
        "epoch <1>:   0% 0/4 [0.0s, 0/s]",
        "epoch <1>:  50% 2/4 [0.2s, 10/s]",
        "epoch <1>: 100% 4/4 [0.5s, 8/s] loss=0.5",
        "epoch <1>: 100% 4/4 [2.0s, 2/s] loss=0.5",
    ]
    assert cell.updates[1]["text/html"] == (
        '<progress value="2" max="4" style="width: 16em; vertical-align: middle"></progress> '
        "<code>epoch &lt;1&gt;:  50% 2/4 [0.2s, 10/s]</code>")
    assert capsys.readouterr() == ("", "")  # nothing on stdout or stderr: no carriage returns there


def test_in_a_notebook_a_bar_without_total_is_indeterminate(monkeypatch: pytest.MonkeyPatch) -> None:
    cell = FakeCell()
    monkeypatch.setattr(xbp.progress, "_cell_output", lambda: cell)
    with ProgressBar(None, "download", unit="B") as bar:
        bar.update(1_500_000)
    final: Any = cell.updates[-1]
    assert final["text/plain"].startswith("download: 1.5MB [")
    assert final["text/html"].startswith('<progress style="width: 16em; vertical-align: middle"></progress>')


def test_an_explicit_file_or_a_disabled_bar_never_draws_into_the_notebook(
        monkeypatch: pytest.MonkeyPatch) -> None:
    cell = FakeCell()
    monkeypatch.setattr(xbp.progress, "_cell_output", lambda: cell)
    out = io.StringIO()
    with ProgressBar(3, "x", file=out) as bar:
        bar.update(3)
    with ProgressBar(3, "y", enabled=False) as bar:
        bar.update(3)
    assert cell.updates == [] and out.getvalue().startswith("x: 100% 3/3 [")


@needs_test_extra("ipykernel")
def test_outside_a_kernel_there_is_no_cell_even_with_ipykernel_imported() -> None:
    import ipykernel  # noqa: F401  (comes with the test extra)

    assert xbp.progress._cell_output() is None
