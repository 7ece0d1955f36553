"""A tiny progress bar on stderr, for downloads and training epochs.

On a terminal it redraws one line in place (at most ten times a second) with the count, the
percentage, the rate and the elapsed time. When the output is not a terminal (a log file, CI),
it writes a single final line when closed, so logs stay clean.

In a Jupyter notebook it draws into the cell's output instead of stderr: one display (an HTML
`<progress>` bar and the same line as text) that is updated in place, as a terminal line would
be. Carriage returns written to a cell's stderr pile up in the saved notebook and in exports, and
a widget (tqdm's notebook bar) needs ipywidgets and shows as "HBox(...)" where widgets are not
rendered; an updated display needs neither and leaves the final line in the saved notebook.
"""

from __future__ import annotations

import html
import sys
import time
from typing import IO, Any

REDRAW_INTERVAL_S = 0.1


def _human(x: float) -> str:
    """12 -> '12', 1234 -> '1.2k', 26421880 -> '26.4M'."""
    prefix = ""
    for prefix in ("", "k", "M", "G", "T"):
        if abs(x) < 1000 or prefix == "T":
            break
        x /= 1000
    return f"{x:.0f}" if prefix == "" and x == int(x) else f"{x:.1f}{prefix}"


def _cell_output() -> Any | None:
    """A display in the output of the running Jupyter cell, to update; None outside a Jupyter kernel."""
    if "ipykernel" not in sys.modules:  # no kernel is running; scripts never import IPython for this
        return None
    from IPython import get_ipython
    from IPython.display import display

    shell = get_ipython()
    if shell is None or getattr(shell, "kernel", None) is None:  # a terminal IPython has no kernel
        return None
    return display({"text/plain": ""}, raw=True, display_id=True)


class ProgressBar:
    """Counts `update(n)` calls towards `total` (None when unknown) and shows the progress.

    The bar goes to `file` (default stderr) or, when `file` is not given and the code runs in a
    Jupyter kernel, into the cell's output.
    """

    def __init__(self, total: int | None, desc: str = "", unit: str = "", *,
                 file: IO[str] | None = None, enabled: bool = True) -> None:
        self.total, self.desc, self.unit = total, desc, unit
        self.file = sys.stderr if file is None else file
        self.enabled = enabled
        self.cell = _cell_output() if enabled and file is None else None
        isatty = getattr(self.file, "isatty", None)
        self.live = self.cell is not None or (enabled and isatty is not None and isatty())
        self.n, self.postfix, self.closed = 0, "", False
        self.start = self.last_draw = time.monotonic()
        self.width = 0
        if self.cell is not None:
            self._draw("", self.start)  # the bar at 0 from the start, not an empty output

    def update(self, n: int = 1) -> None:
        """Add `n` to the count; redraw if the last redraw is old enough."""
        self.n += n
        if self.live:  # else no clock read: a training loop calls this every step
            now = time.monotonic()
            if now - self.last_draw >= REDRAW_INTERVAL_S:
                self._draw("\r", now)

    def set_postfix(self, text: str) -> None:
        """Show `text` (e.g. 'loss=0.123') after the numbers."""
        self.postfix = text

    def line(self, now: float | None = None) -> str:
        """The text of the bar as it stands at time `now` (default: now)."""
        elapsed = (time.monotonic() if now is None else now) - self.start
        rate = self.n / elapsed if elapsed > 0 else 0.0
        count = _human(self.n) + (f"/{_human(self.total)}" if self.total else "") + self.unit
        percent = f"{100 * self.n / self.total:3.0f}% " if self.total else ""
        text = f"{self.desc}: " if self.desc else ""
        text += f"{percent}{count} [{elapsed:.1f}s, {_human(rate)}{self.unit}/s]"
        return f"{text} {self.postfix}" if self.postfix else text

    def close(self) -> None:
        """Write the final line (once); later calls do nothing."""
        if not self.closed and self.enabled:
            self._draw("\r" if self.live else "", time.monotonic())
            if self.cell is None:
                self.file.write("\n")
                self.file.flush()
        self.closed = True

    def to_html(self, text: str) -> str:
        """The bar as HTML, for a notebook: a `<progress>` element, then the line."""
        value = f' value="{self.n}" max="{self.total}"' if self.total else ""  # no total: indeterminate
        return (f'<progress{value} style="width: 16em; vertical-align: middle"></progress> '
                f"<code>{html.escape(text)}</code>")

    def _draw(self, start: str, now: float) -> None:
        text = self.line(now)
        if self.cell is not None:
            self.cell.update({"text/plain": text, "text/html": self.to_html(text)}, raw=True)
            self.last_draw = now
            return
        self.file.write(start + text.ljust(self.width))  # pad over a longer previous line
        self.file.flush()
        self.width, self.last_draw = len(text), now

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
