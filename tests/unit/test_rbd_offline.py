"""The rbd backend's pieces that need no cluster: missing bindings, capacity, paging."""

import sys

import pytest

from evs_driver import exception
from evs_driver.backends.rbd import RbdBackend, usage
from evs_driver.manageable import paginate
from tests.lvm_guest.guestenv import backend_conf


def test_missing_ceph_bindings_fail_setup_in_one_clear_line(monkeypatch):
    # Fault injection: a None entry in sys.modules makes ``import rados`` fail exactly as
    # on a host without python3-rados, whether or not this one has it.
    monkeypatch.setitem(sys.modules, "rados", None)
    backend = RbdBackend(backend_conf("ceph", volume_backend="rbd"), "ceph")
    with pytest.raises(exception.ConfigError) as caught:
        backend.setup()
    message = caught.value.msg
    assert "python3-rados and python3-rbd" in message
    assert "tools/link-ceph-bindings" in message
    assert "\n" not in message


DF = {"pools": [{"name": "evs", "stats": {"stored": 3 * 2**30, "max_avail": 7 * 2**30}}]}


@pytest.mark.parametrize(
    "quota, expected",
    [
        (0, (10 * 2**30, 7 * 2**30)),  # no quota: stored + what the cluster can still place
        (5 * 2**30, (5 * 2**30, 2 * 2**30)),  # the quota bounds both
        (2 * 2**30, (2 * 2**30, 0)),  # over quota: nothing free
        (20 * 2**30, (20 * 2**30, 7 * 2**30)),  # a quota above the cluster's room
    ],
)
def test_capacity_follows_cinders_rbd_driver(quota, expected):
    assert usage.capacity(DF, {"quota_max_bytes": quota}, "evs") == expected


class TestPaginate:
    ENTRIES = [
        {"reference": {"source-name": n}, "size": s} for n, s in (("b", 2), ("a", 3), ("c", 1))
    ]

    @staticmethod
    def names(entries):
        return [e["reference"]["source-name"] for e in entries]

    def test_sorted_by_reference_by_default(self):
        assert self.names(paginate(self.ENTRIES, None, None, 0, None, None)) == ["a", "b", "c"]

    def test_sorted_by_size_descending_with_offset_and_limit(self):
        page = paginate(self.ENTRIES, None, 1, 1, ["size"], ["desc"])
        assert self.names(page) == ["b"]

    def test_marker_starts_after_its_entry(self):
        marker = {"source-name": "a"}
        assert self.names(paginate(self.ENTRIES, marker, None, 0, ["identifier"], None)) == [
            "b",
            "c",
        ]
