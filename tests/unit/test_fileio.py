"""fileio.copy_range: kernel copies between real files, asked for in bounded calls."""

import os

import pytest

from evs_driver import fileio


@pytest.fixture
def files(tmp_path):
    """Open (source, target) descriptors on two real files the test fills."""
    opened = []

    def open_pair(source: bytes, target: bytes) -> tuple[int, int]:
        (tmp_path / "src").write_bytes(source)
        (tmp_path / "dst").write_bytes(target)
        opened.extend(
            [os.open(tmp_path / "src", os.O_RDONLY), os.open(tmp_path / "dst", os.O_RDWR)]
        )
        return opened[0], opened[1]

    yield open_pair
    for fd in opened:
        os.close(fd)


def test_a_long_copy_lands_whole_in_bounded_calls(files, tmp_path, monkeypatch):
    length = 3 * fileio.COPY_CALL_BYTES + 12345  # several calls and a short last one
    data = os.urandom(length + 4096)
    src, dst = files(data, b"\xff" * (length + 8192))
    asked = []
    real_copy = os.copy_file_range

    def recording_copy(*args):  # a spy: the real kernel copy, with its sizes noted
        asked.append(args[2])
        return real_copy(*args)

    monkeypatch.setattr(os, "copy_file_range", recording_copy)
    fileio.copy_range(src, 777, dst, 4096, length)
    copied = (tmp_path / "dst").read_bytes()
    assert copied[4096 : 4096 + length] == data[777 : 777 + length]
    assert copied[:4096] == copied[4096 + length :] == b"\xff" * 4096  # nothing else touched
    assert len(asked) >= 4 and max(asked) == fileio.COPY_CALL_BYTES


def test_a_source_that_ends_early_is_an_error_not_a_short_copy(files):
    src, dst = files(b"x" * 100, b"")
    with pytest.raises(OSError, match="stopped short"):
        fileio.copy_range(src, 0, dst, 0, 200)
