"""examples/ch05.ipynb runs top to bottom in a real Jupyter kernel and shows the book's numbers.

The notebook is committed without outputs; here nbclient executes it in an ipykernel running this
interpreter (its own kernel spec, so no kernel installed elsewhere on the machine is picked), on
Fashion-MNIST, and the tests read what each cell printed and displayed.
"""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests._e2e import has_fashion_mnist, pythonpath
from tests._extras import missing

pytestmark = pytest.mark.slow  # end to end: tests/e2e/, left out by ci/test -m "not slow"

nbformat = pytest.importorskip("nbformat", reason=missing("nbformat"))
NotebookClient = pytest.importorskip("nbclient", reason=missing("nbclient")).NotebookClient

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOK = ROOT / "examples" / "ch05.ipynb"
KERNEL = "xbp-test-python"


def code_cells(nb: Any) -> list[Any]:
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def cell_with(nb: Any, text: str) -> Any:
    (cell,) = [cell for cell in code_cells(nb) if text in cell.source]
    return cell


def stdout(cell: Any) -> list[str]:
    return "".join(out.text for out in cell.outputs
                   if out.output_type == "stream" and out.name == "stdout").splitlines()


def test_the_notebook_is_committed_without_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    assert len(code_cells(nb)) >= 10
    for cell in code_cells(nb):
        assert cell.outputs == [] and cell.execution_count is None, f"outputs left in cell {cell.id}"
    assert not any("execution" in cell.metadata for cell in nb.cells), "strip the recorded run times"


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The notebook after a real kernel ran every cell (CellExecutionError names a failing cell)."""
    if not has_fashion_mnist():
        pytest.skip("Fashion-MNIST not found: apt-get install dataset-fashion-mnist, or set XBP_DATA_DIR")
    home = tmp_path_factory.mktemp("jupyter")
    spec = home / "kernels" / KERNEL
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "xbp tests", "language": "python"}))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("JUPYTER_PATH", str(home))  # searched first for kernel specs
        env.setenv("JUPYTER_PLATFORM_DIRS", "1")  # jupyter_core's future paths, without its warning
        env.setenv("JUPYTER_RUNTIME_DIR", str(home / "runtime"))
        env.setenv("IPYTHONDIR", str(home / "ipython"))  # no profile or startup files of the user
        env.setenv("XBP_DATASET", "fashion-mnist")  # offline
        env.setenv("PYTHONPATH", pythonpath())
        env.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend draws the plot
        env.delenv("XBP_BACKEND", raising=False)
        for threads in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setenv(threads, "1")  # on a busy machine, BLAS threads waiting for each other cost 10x
        NotebookClient(nb, kernel_name=KERNEL, timeout=600, startup_timeout=120,
                       resources={"metadata": {"path": str(home)}}).execute()
    yield nb


def test_apple_shopping_prints_the_books_numbers(executed: Any) -> None:
    assert stdout(cell_with(executed, "mul_apple_layer.forward(apple, apple_num)\nprice")) == [
        "price: 220", "dApple: 2.2", "dApple_num: 110", "dTax: 200"]
    assert stdout(cell_with(executed, "orange_price = ")) == [
        "price: 715", "dApple: 2.2  dApple_num: 110", "dOrange: 3.3000000000000003  dOrange_num: 165",
        "dTax: 650"]


def test_graphs_show_as_pictures_with_the_books_numbers(executed: Any) -> None:
    cell = cell_with(executed, "g = Graph()")
    assert stdout(cell) == ["price = 220", "dprice/dapple = 2.2", "dprice/dapple_num = 110",
                            "dprice/dtax = 200"]
    for source in ("g = Graph()", "chain = Graph()", "network.to_graph("):
        (result,) = [out for out in cell_with(executed, source).outputs
                     if out.output_type == "execute_result"]
        if shutil.which("dot"):
            assert set(result.data) == {"image/svg+xml", "text/plain"}
            assert result.data["image/svg+xml"].startswith("<svg")
        else:
            assert set(result.data) == {"text/markdown", "text/plain"}
            assert result.data["text/markdown"].startswith("```mermaid\ngraph LR\n")
    picture = next(out for out in cell.outputs if out.output_type == "execute_result").data
    if shutil.which("dot"):
        for number in (">220<", ">2.2<", ">110<", ">200<"):
            assert number in picture["image/svg+xml"]


def test_the_gradient_check_agrees_to_better_than_1e_7(executed: Any) -> None:
    lines = stdout(cell_with(executed, "gradient_check(network"))
    diffs = {key: float(value) for key, value in (line.split(":") for line in lines)}
    assert list(diffs) == ["W1", "b1", "W2", "b2"]
    assert all(diff < 1e-7 for diff in diffs.values()), diffs


def test_training_shows_one_clean_progress_bar_per_epoch_then_the_plot(executed: Any) -> None:
    cell = cell_with(executed, "history = fit(")
    bars = [out.data for out in cell.outputs if out.output_type == "display_data"]
    assert [bar["text/plain"].split(" [")[0] for bar in bars] == [
        f"epoch {epoch}/5: 100% 120/120 steps" for epoch in range(1, 6)]  # each updated to its end
    assert all(bar["text/html"].startswith('<progress value="120" max="120"') for bar in bars)
    epochs = [line for line in stdout(cell) if line.startswith("epoch ")]
    assert len(epochs) == 5 and all("test acc" in line for line in epochs)
    plot = [out for out in cell_with(executed, "plt.subplots").outputs if out.output_type == "display_data"]
    assert len(plot) == 1 and "image/png" in plot[0].data


def test_no_cell_wrote_to_stderr_or_a_carriage_return(executed: Any) -> None:
    for cell in code_cells(executed):
        for out in cell.outputs:
            assert not (out.output_type == "stream" and out.name == "stderr"), (cell.id, out.text)
            texts = [out.text] if out.output_type == "stream" else list(out.get("data", {}).values())
            assert not any("\r" in text for text in texts if isinstance(text, str)), cell.id
