"""read_idx: valid files round-trip; hostile or broken files raise DatasetError naming the file."""

from __future__ import annotations

import gzip
import hashlib
import struct
import tracemalloc
import zlib
from pathlib import Path

import numpy as np
import pytest

from tests._e2e import SHARED
from tests._idxfiles import HTML_PAGE, gz, idx_bytes
from xbp.datasets.download import payload_sha256, read_verified, sha256_file
from xbp.datasets.idx import idx_header, read_idx
from xbp.datasets.mnist import FILES
from xbp.errors import DatasetError

SHARED_MNIST = SHARED / "data" / "mnist"
RNG = np.random.default_rng(0)
LABELS = RNG.integers(0, 10, 10000, dtype=np.uint8)
IMAGES = RNG.integers(0, 256, (7, 28, 28), dtype=np.uint8)


def write(path: Path, data: bytes) -> Path:
    path.write_bytes(gz(data) if path.name.endswith(".gz") else data)
    return path


@pytest.mark.parametrize("filename", ["t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"])
def test_labels_round_trip_gzipped_and_raw(tmp_path: Path, filename: str) -> None:
    labels = read_idx(write(tmp_path / filename, idx_bytes(LABELS)))
    assert labels.dtype == np.uint8 and labels.shape == (10000,)
    np.testing.assert_array_equal(labels, LABELS)


def test_images_of_unknown_name_take_the_header_shape(tmp_path: Path) -> None:
    images = read_idx(write(tmp_path / "mine-idx3-ubyte.gz", idx_bytes(IMAGES)))
    assert images.dtype == np.uint8 and images.shape == (7, 28, 28)
    np.testing.assert_array_equal(images, IMAGES)
    assert idx_header(images) == idx_bytes(IMAGES)[:16]


def test_raw_file_with_gzip_content_is_decompressed(tmp_path: Path) -> None:
    path = tmp_path / "images-idx3-ubyte"
    path.write_bytes(gz(idx_bytes(IMAGES)))
    np.testing.assert_array_equal(read_idx(path), IMAGES)


def test_expected_shape_argument_overrides_the_known_name(tmp_path: Path) -> None:
    path = write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(IMAGES))
    assert read_idx(path, (7, 28, 28)).shape == (7, 28, 28)
    with pytest.raises(DatasetError, match=r"dimensions 7 x 28 x 28 in the header, expected "
                                           r"8 x 28 x 28"):
        read_idx(path, (8, 28, 28))


def test_known_name_with_wrong_dimensions(tmp_path: Path) -> None:
    path = write(tmp_path / "train-images-idx3-ubyte.gz", idx_bytes(IMAGES))
    with pytest.raises(DatasetError, match=r"train-images-idx3-ubyte\.gz: dimensions 7 x 28 x 28 "
                                           r"in the header, expected 60000 x 28 x 28"):
        read_idx(path)


def test_labels_in_an_images_file_name(tmp_path: Path) -> None:
    path = write(tmp_path / "t10k-images-idx3-ubyte.gz", idx_bytes(LABELS))
    with pytest.raises(DatasetError, match=r"dimensions 10000 in the header, expected "
                                           r"10000 x 28 x 28"):
        read_idx(path)


@pytest.mark.parametrize("magic", [0x00000802, 0x00000903, 0x08030000, 0x00000c03])
def test_wrong_magic_number(tmp_path: Path, magic: int) -> None:
    path = write(tmp_path / "data.gz", idx_bytes(IMAGES, magic=magic))
    with pytest.raises(DatasetError, match=rf"data\.gz: not an IDX file .*magic number "
                                           rf"0x{magic:08x}, expected 0x00000801 \(labels\)"):
        read_idx(path)


@pytest.mark.parametrize("data", [b"", b"\x00\x00"], ids=["empty", "two-bytes"])
def test_file_too_short_for_a_magic_number(tmp_path: Path, data: bytes) -> None:
    with pytest.raises(DatasetError, match=r"x\.gz: not an IDX file .*magic number missing"):
        read_idx(write(tmp_path / "x.gz", data))


def test_header_cut_short(tmp_path: Path) -> None:
    path = write(tmp_path / "x.gz", idx_bytes(IMAGES)[:10])
    with pytest.raises(DatasetError, match=r"x\.gz: header cut short \(10 of 16 bytes\)"):
        read_idx(path)


@pytest.mark.parametrize("filename", ["t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"])
def test_short_body(tmp_path: Path, filename: str) -> None:
    path = write(tmp_path / filename, idx_bytes(LABELS)[:-1])
    with pytest.raises(DatasetError, match=rf"{filename}: too short: the header says 10000, which "
                                           r"is 10008 bytes of IDX, but there are only 10007"):
        read_idx(path)


@pytest.mark.parametrize("filename", ["t10k-labels-idx1-ubyte.gz", "t10k-labels-idx1-ubyte"])
def test_long_body(tmp_path: Path, filename: str) -> None:
    path = write(tmp_path / filename, idx_bytes(LABELS) + b"\x00")
    with pytest.raises(DatasetError, match=rf"{filename}: too long: the header says 10000, which "
                                           r"is 10008 bytes of IDX, but more data follows"):
        read_idx(path)


def huge_header() -> bytes:
    """A header claiming 2**31 images of 28 x 28 (1.7 TB) followed by a few bytes."""
    return struct.pack(">IIII", 0x00000803, 2**31, 28, 28) + bytes(100)


@pytest.mark.parametrize("filename", ["train-images-idx3-ubyte.gz", "images.gz", "images"])
def test_huge_claimed_count_fails_before_allocating(tmp_path: Path, filename: str) -> None:
    path = write(tmp_path / filename, huge_header())
    message = (r"dimensions 2147483648 x 28 x 28 in the header, expected 60000 x 28 x 28"
               if filename.startswith("train") else
               r"header claims 2147483648 x 28 x 28 = 1683627180032 bytes, more than the "
               r"1073741824-byte limit")
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=rf"{filename}: {message}"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


@pytest.mark.parametrize("filename", ["images.gz", "images"])
def test_claimed_count_under_the_cap_but_over_the_file(tmp_path: Path, filename: str) -> None:
    header = struct.pack(">IIII", 0x00000803, 1000, 28, 28) + bytes(100)
    path = write(tmp_path / filename, header)
    with pytest.raises(DatasetError, match=rf"{filename}: too short: the header says 1000 x 28 x "
                                           r"28, which is 784016 bytes of IDX, but there are "
                                           r"only 116"):
        read_idx(path)


def test_max_bytes_caps_files_of_unknown_shape(tmp_path: Path) -> None:
    path = write(tmp_path / "images.gz", idx_bytes(IMAGES))
    with pytest.raises(DatasetError, match=r"= 5488 bytes, more than the 5000-byte limit"):
        read_idx(path, max_bytes=5000)


def test_label_out_of_range_names_file_label_and_index(tmp_path: Path) -> None:
    labels = LABELS.copy()
    labels[5], labels[7] = 12, 10
    path = write(tmp_path / "t10k-labels-idx1-ubyte.gz", idx_bytes(labels))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: label 12 at index 5 is "
                                           r"not a valid class \(expected 0\.\.9\)"):
        read_idx(path)


def test_gzip_bomb_is_read_only_up_to_the_expected_size(tmp_path: Path) -> None:
    """A valid labels header followed by 64 MB of zeros that compress to ~64 KB."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # 31: gzip container
    parts = [compressor.compress(idx_bytes(LABELS))]
    zeros = bytes(1 << 20)
    parts += [compressor.compress(zeros) for _ in range(64)]
    parts.append(compressor.flush())
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(b"".join(parts))
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: too long: .*but more "
                                               r"data follows"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 << 20  # far below the 64 MB the stream expands to


def test_html_error_page_saved_as_gz(tmp_path: Path) -> None:
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(HTML_PAGE)
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: not a gzip file \(it is "
                                           r"an HTML/XML page, probably an error page"):
        read_idx(path)


def test_other_non_gzip_content_in_a_gz_name(tmp_path: Path) -> None:
    path = tmp_path / "labels.gz"
    path.write_bytes(idx_bytes(LABELS))  # raw IDX under a .gz name
    with pytest.raises(DatasetError, match=r"labels\.gz: not a gzip file \(it starts with "
                                           r"00 00 08 01 00 00 27 10, not 1f 8b\)"):
        read_idx(path)


def test_truncated_gzip_stream(tmp_path: Path) -> None:
    data = gz(idx_bytes(LABELS))
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: gzip stream cut short"):
        read_idx(path)


def test_gzip_crc_mismatch(tmp_path: Path) -> None:
    data = bytearray(gz(idx_bytes(LABELS)))
    data[-8] ^= 0xFF  # the CRC-32 of the trailer
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(bytes(data))
    with pytest.raises(DatasetError, match=r"t10k-labels-idx1-ubyte\.gz: cannot read it: CRC check "
                                           r"failed"):
        read_idx(path)


def test_error_names_the_file_as_given_by_name(tmp_path: Path) -> None:
    path = tmp_path / ".download.part"
    path.write_bytes(HTML_PAGE)
    with pytest.raises(DatasetError, match=r"^t10k-labels-idx1-ubyte\.gz: not a gzip file"):
        read_idx(path, name="t10k-labels-idx1-ubyte.gz")


@pytest.mark.parametrize("index", [2, 3, 1], ids=["t10k-images", "t10k-labels", "train-labels"])
def test_real_mnist_files_match_their_pins(index: int) -> None:
    spec = FILES["mnist"][index]
    path = SHARED_MNIST / spec.filename
    if not path.is_file():
        pytest.skip(f"real MNIST files not found at {SHARED_MNIST} (shared/ beside the repository)")
    array = read_idx(path)
    assert array.dtype == np.uint8 and array.shape == spec.shape
    assert sha256_file(path) == spec.gz_sha256
    assert payload_sha256(array) == spec.payload_sha256
    with gzip.open(path, "rb") as stream:  # the payload hash is that of the decompressed file
        assert hashlib.sha256(stream.read()).hexdigest() == spec.payload_sha256
    if array.ndim == 1:
        assert set(np.unique(array)) == set(range(10))
    else:
        assert array.min() == 0 and array.max() == 255
    np.testing.assert_array_equal(read_verified(path, spec), array)
