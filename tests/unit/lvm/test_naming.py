"""Catalog ids to LV names, within LVM's rules."""

import pytest

from evs_driver import exception
from evs_driver.backends.lvm.naming import Naming, dm_name

UUID = "b3602939-8531-4cee-a8c9-2cc6b80089fc"


@pytest.fixture
def naming():
    return Naming("evs-volumes", "volume-", "_snapshot-")


def test_names_and_back(naming):
    assert naming.volume(UUID) == f"volume-{UUID}"
    assert naming.snapshot(UUID) == f"_snapshot-{UUID}"
    assert naming.revert_temp(UUID) == f"evs-revert-{UUID}"
    assert naming.kind_of(f"volume-{UUID}") == ("volume", UUID)
    assert naming.kind_of(f"_snapshot-{UUID}") == ("snapshot", UUID)
    assert naming.kind_of("pool") is None
    assert naming.kind_of("volume-") is None
    assert naming.path(f"volume-{UUID}") == f"/dev/evs-volumes/volume-{UUID}"


def test_dm_name_doubles_dashes():
    assert dm_name("evs-volumes", "volume-1") == "evs--volumes-volume--1"


@pytest.mark.parametrize("bad", ["", "-x", "a/b", "a b", "é", "x_tdata", "x_pmspare", "a" * 120])
def test_bad_ids_are_invalid_input(naming, bad):
    with pytest.raises(exception.InvalidInput):
        naming.volume(bad)
    with pytest.raises(exception.InvalidInput):
        naming.snapshot(bad)


def test_longest_id_that_fits(naming):
    # dm name: "evs--volumes-" (13) + "evs--revert--" (13) + id <= 127
    naming.volume("a" * 101)
    with pytest.raises(exception.InvalidInput, match="too long"):
        naming.volume("a" * 102)


@pytest.mark.parametrize(
    ("volume_prefix", "snapshot_prefix"),
    [
        ("vol-", "vol-"),
        ("v", "vol-snap-"),
        ("snapshot-", "s-"),
        ("v-", "pvmove-"),
        ("evs-revert-", "s-"),
    ],
)
def test_clashing_or_reserved_prefixes_are_config_errors(volume_prefix, snapshot_prefix):
    with pytest.raises(exception.ConfigError):
        Naming("vg", volume_prefix, snapshot_prefix)
