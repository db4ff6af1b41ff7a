"""LVM's failures become the project's exceptions, with LVM's message attached."""

import pathlib
import unittest

import ddt
import pytest

from evs_driver import exception
from evs_driver.backends.lvm import errors

FIXTURES = pathlib.Path(__file__).parent / "fixtures"
CMD = ("lvcreate", "-n", "x", "vg")

# (captured stderr of real LVM, the error it must become)
CAPTURED = [
    ("stderr-lvs-NotFound.txt", exception.NotFound),
    ("stderr-vgs-NotFound.txt", exception.NotFound),
    ("stderr-lvcreate-NotFound.txt", exception.NotFound),
    ("stderr-snapshot-origin-missing.txt", exception.NotFound),
    ("stderr-lvcreate-AlreadyExists.txt", exception.AlreadyExists),
    ("stderr-lvcreate-PoolFull.txt", exception.PoolFull),
    ("stderr-lvcreate-BackendError.txt", exception.BackendError),
]


@pytest.mark.parametrize(("name", "expected"), CAPTURED)
def test_captured_lvm_errors_map(name, expected):
    stderr = (FIXTURES / name).read_text()
    err = errors.from_lvm("lvm", CMD, 5, stderr)
    assert type(err) is expected
    assert err.lvm_message and err.lvm_message in str(err)


@ddt.ddt
class TestMessages(unittest.TestCase):
    @ddt.data(
        ("  Thin pool vg/pool has insufficient free space.", "data"),
        (
            "  Cannot create new thin volume, free space in thin pool vg/pool reached threshold.",
            "data",
        ),
        ("  Thin pool vg-pool-tpool metadata is full.", "metadata"),
    )
    @ddt.unpack
    def test_full_pool_messages_are_pool_full(self, stderr, what):
        err = errors.from_lvm("lvm", CMD, 5, stderr)
        assert isinstance(err, exception.PoolFull)
        assert f"{what} space exhausted" in str(err)

    @ddt.data(
        ("  Logical volume vg/lv in use.", True),
        ("  device-mapper: remove ioctl on vg-lv failed: Device or resource busy", True),
        ('  Can\'t remove open logical volume "lv".', True),
        ('  Failed to find logical volume "vg/lv"', False),
        ("", False),
    )
    @ddt.unpack
    def test_transient_failures_are_recognised(self, stderr, transient):
        assert errors.is_transient(stderr) is transient


def test_unknown_failure_quotes_the_command_and_lvm():
    err = errors.from_lvm("lvm", CMD, 3, "  WARNING: something.\n  Strange failure.\n")
    assert isinstance(err, exception.BackendError)
    assert "`lvcreate -n x vg` exited with 3: Strange failure." in str(err)
    assert err.lvm_message == "Strange failure."


def test_timeout_and_missing_command_name_the_command():
    assert "lvm_command_timeout" in str(errors.timeout("lvm", ("lvs",), 5))
    missing = errors.command_missing("lvm", ("lvs",), FileNotFoundError(2, "No such file"))
    assert "cannot run `lvs`" in str(missing)
