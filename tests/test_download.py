"""download_file against a local HTTP server: mirrors, retries, checksums, atomic replacement."""

from __future__ import annotations

import io
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import xbp.datasets.download as download_module
from tests._idxfiles import HTML_PAGE, Mirror, Reply, refused_url, tiny_set
from xbp.datasets.download import FileSpec, download_file
from xbp.errors import DatasetError
from xbp.progress import ProgressBar

TINY = tiny_set()
LABELS = TINY.specs[3]  # t10k-labels-idx1-ubyte, 6 labels
PATH = f"/{{}}/{LABELS.filename}"


@pytest.fixture
def mirror() -> Iterator[Mirror]:
    with Mirror() as server:
        yield server


@pytest.fixture(autouse=True)
def no_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(download_module, "BACKOFF_S", 0.0)


def fetch(mirror_urls: list[str], folder: Path, spec: FileSpec = LABELS, **kwargs: object) -> Path:
    return download_file(spec, mirror_urls, folder, progress=False, **kwargs)  # type: ignore[arg-type]


def test_first_mirror_404_then_second_mirror(mirror: Mirror, tmp_path: Path) -> None:
    mirror.script(PATH.format("b"), Reply(200, TINY.gz[LABELS.name]))
    path = fetch([mirror.url("a"), mirror.url("b")], tmp_path)
    assert path == tmp_path / LABELS.filename
    assert path.read_bytes() == TINY.gz[LABELS.name]
    assert os.listdir(tmp_path) == [LABELS.filename]  # no temporary file left over
    assert mirror.hits == {PATH.format("a"): 1, PATH.format("b"): 1}  # a 404 is not retried


def test_checksum_mismatch_is_refused_and_leaves_no_file(mirror: Mirror, tmp_path: Path) -> None:
    other = tiny_set(seed=1)  # a valid IDX file, but not the pinned one
    for prefix in "ab":
        mirror.script(PATH.format(prefix), Reply(200, other.gz[LABELS.name]))
    with pytest.raises(DatasetError) as info:
        fetch([mirror.url("a"), mirror.url("b")], tmp_path)
    message = str(info.value)
    assert message.count("refused the downloaded file: t10k-labels-idx1-ubyte.gz: checksum "
                         f"mismatch: file sha256 {other.specs[3].gz_sha256}") == 2
    assert f"expected .gz sha256 {LABELS.gz_sha256} or payload sha256 {LABELS.payload_sha256}" \
        in message
    assert os.listdir(tmp_path) == []
    assert mirror.hits == {PATH.format("a"): 1, PATH.format("b"): 1}  # a bad file is not retried


def test_truncated_transfer_is_retried(mirror: Mirror, tmp_path: Path) -> None:
    data = TINY.gz[LABELS.name]
    mirror.script(PATH.format("a"), Reply(200, data[:20], len(data)), Reply(200, data))
    path = fetch([mirror.url("a")], tmp_path)
    assert path.read_bytes() == data
    assert mirror.hits[PATH.format("a")] == 2
    assert os.listdir(tmp_path) == [LABELS.filename]


def test_always_truncated_transfer_fails_and_leaves_no_file(mirror: Mirror,
                                                            tmp_path: Path) -> None:
    data = TINY.gz[LABELS.name]
    mirror.script(PATH.format("a"), Reply(200, data[:20], len(data)))
    with pytest.raises(DatasetError, match=rf"{mirror.url('a')}t10k-labels-idx1-ubyte\.gz: "
                                           rf"connection closed after 20 of {len(data)} bytes "
                                           r"\(3 attempts\)"):
        fetch([mirror.url("a")], tmp_path)
    assert mirror.hits[PATH.format("a")] == 3
    assert os.listdir(tmp_path) == []


def test_html_error_page_served_as_gz(mirror: Mirror, tmp_path: Path) -> None:
    mirror.script(PATH.format("a"), Reply(200, HTML_PAGE))
    with pytest.raises(DatasetError, match=r"refused the downloaded file: t10k-labels-idx1-ubyte"
                                           r"\.gz: not a gzip file \(it is an HTML/XML page"):
        fetch([mirror.url("a")], tmp_path)
    assert os.listdir(tmp_path) == []


def test_server_error_then_success(mirror: Mirror, tmp_path: Path) -> None:
    data = TINY.gz[LABELS.name]
    mirror.script(PATH.format("a"), Reply(503, HTML_PAGE), Reply(500), Reply(200, data))
    assert fetch([mirror.url("a")], tmp_path).read_bytes() == TINY.gz[LABELS.name]
    assert mirror.hits[PATH.format("a")] == 3


def test_backoff_doubles_between_attempts(mirror: Mirror, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)
    mirror.script(PATH.format("a"), Reply(502))
    mirror.script(PATH.format("b"), Reply(200, TINY.gz[LABELS.name]))
    fetch([mirror.url("a"), mirror.url("b")], tmp_path, attempts=4, backoff_s=0.25)
    assert waits == [0.25, 0.5, 1.0]
    assert mirror.hits == {PATH.format("a"): 4, PATH.format("b"): 1}


def test_persistent_server_error_lists_the_status(mirror: Mirror, tmp_path: Path) -> None:
    mirror.script(PATH.format("a"), Reply(503))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: HTTP 503 Service "
                                           r"Unavailable \(3 attempts\)"):
        fetch([mirror.url("a")], tmp_path)


def test_oversized_download_is_refused(mirror: Mirror, tmp_path: Path) -> None:
    mirror.script(PATH.format("a"), Reply(200, bytes(70_000)))
    with pytest.raises(DatasetError, match=r"server announces 70000 bytes, more than the 65550 "
                                           r"expected at most"):
        fetch([mirror.url("a")], tmp_path)
    assert os.listdir(tmp_path) == []


def test_no_network_lists_every_url_with_its_error(tmp_path: Path) -> None:
    urls = [refused_url("a"), refused_url("b")]
    with pytest.raises(DatasetError) as info:
        fetch(urls, tmp_path, hint="HINT: work offline")
    lines = str(info.value).splitlines()
    assert lines[0] == f"could not download t10k-labels-idx1-ubyte.gz into {tmp_path}; tried:"
    for line, url in zip(lines[1:3], urls, strict=True):
        assert line.startswith(f"  {url}t10k-labels-idx1-ubyte.gz: ")
        assert "Connection refused" in line and line.endswith("(3 attempts)")
    assert lines[3:] == ["HINT: work offline"]
    assert os.listdir(tmp_path) == []


def test_existing_file_is_replaced_atomically(mirror: Mirror, tmp_path: Path) -> None:
    (tmp_path / LABELS.filename).write_bytes(b"stale")
    mirror.serve_set("a", TINY)
    assert fetch([mirror.url("a")], tmp_path).read_bytes() == TINY.gz[LABELS.name]
    assert os.listdir(tmp_path) == [LABELS.filename]


def test_unwritable_folder_is_one_clear_error(mirror: Mirror, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    with pytest.raises(DatasetError, match=rf"cannot create {blocker}/sub to download "
                                           r"t10k-labels-idx1-ubyte\.gz into"):
        fetch([mirror.url("a")], blocker / "sub")


def test_download_shows_one_progress_line_when_not_a_terminal(
        mirror: Mirror, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mirror.serve_set("a", TINY)
    download_file(TINY.specs[2], [mirror.url("a")], tmp_path)
    err = capsys.readouterr().err
    size = f"{len(TINY.gz[TINY.specs[2].name]) / 1000:.1f}k"
    assert err.count("\n") == 1 and "\r" not in err
    assert err.startswith(f"t10k-images-idx3-ubyte.gz: 100% {size}/{size}B [")


class FakeTerminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_redraws_in_place_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = iter([0.0, 0.05, 0.2, 0.5, 2.0])
    monkeypatch.setattr("xbp.progress.time.monotonic", lambda: next(clock))
    out = FakeTerminal()
    with ProgressBar(4, "epoch", file=out) as bar:  # start at 0.0
        bar.update()  # at 0.05: too soon, no redraw
        bar.update()  # at 0.2: redraw
        bar.set_postfix("loss=0.5")
        bar.update(2)  # at 0.5: redraw; closing at 2.0 draws the final line
    assert out.getvalue().split("\r")[1:] == [
        "epoch:  50% 2/4 [0.2s, 10/s]",
        "epoch: 100% 4/4 [0.5s, 8/s] loss=0.5",
        "epoch: 100% 4/4 [2.0s, 2/s] loss=0.5\n",
    ]


def test_progress_bar_without_total_and_disabled() -> None:
    out = io.StringIO()
    with ProgressBar(None, unit="B", file=out) as bar:
        bar.update(1_500_000)
    assert out.getvalue().startswith("1.5MB [") and out.getvalue().count("\n") == 1
    quiet = FakeTerminal()
    with ProgressBar(10, "x", file=quiet, enabled=False) as bar:
        bar.update(10)
    assert quiet.getvalue() == ""


def test_spec_sizes() -> None:
    assert LABELS.payload_size == 8 + 6
    assert TINY.specs[0].payload_size == 16 + 12 * 28 * 28
