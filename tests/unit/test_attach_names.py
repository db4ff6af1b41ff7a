"""Initiator names, target names and CHAP secrets of attaches."""

import pytest

from evs_driver import exception
from evs_driver.attach import connectors, names

GOOD_IQNS = [
    "iqn.1993-08.org.debian:01:abcdef",
    "iqn.2004-10.com.example:host1",
    "iqn.2026-01.org.evs-tests",
    "eui.02004567A425678D",
    "naa.52004567BA64678D",
]
BAD_IQNS = [
    "",
    "iqn",
    "iqn.2026-13.org.x:y",
    "iqn.26-01.org.x:y",
    "host1",
    "iqn.2026-01.org.x: y",
    "iqn.2026-01." + "a" * 300,
    "eui.123",
    "nqn.2014-08.org.nvmexpress:uuid:x",
]
GOOD_NQNS = [
    "nqn.2014-08.org.nvmexpress:uuid:0f8fad5b-d9cb-469f-a165-70867728950e",
    "nqn.2026-01.org.evs-tests:host-a",
]
BAD_NQNS = [
    "",
    "nqn.2026-01.org.x",
    "nqn.2026-01.org.x:" + "h" * 250,
    "iqn.2026-01.org.x:y",
    "nqn.2014-08.org.nvmexpress:uuid:not-a-uuid",
    "nqn.2026-01.org.x:a/b",
]


class TestNames:
    @pytest.mark.parametrize("name", GOOD_IQNS)
    def test_valid_iqns_pass(self, name):
        assert names.check_iqn(name) == name

    @pytest.mark.parametrize("name", BAD_IQNS)
    def test_invalid_iqns_are_refused_naming_the_form(self, name):
        with pytest.raises(exception.InvalidInitiator, match="iSCSI qualified name"):
            names.check_iqn(name)

    @pytest.mark.parametrize("name", GOOD_NQNS)
    def test_valid_nqns_pass(self, name):
        assert names.check_nqn(name) == name

    @pytest.mark.parametrize("name", BAD_NQNS)
    def test_invalid_nqns_are_refused_naming_the_form(self, name):
        with pytest.raises(exception.InvalidInitiator, match="NVMe qualified name"):
            names.check_nqn(name)


def test_target_names_follow_cinder_and_the_nqn_form():
    prefix = "iqn.2010-10.org.openstack:"
    assert names.target_iqn(prefix, "v1") == "iqn.2010-10.org.openstack:volume-v1"
    assert names.target_nqn(prefix, "v1") == "nqn.2010-10.org.openstack:volume-v1"
    assert names.target_nqn("nvme-subsystem-1:", "v1") == "nqn.nvme-subsystem-1:volume-v1"
    assert names.check_iqn(names.target_iqn(prefix, "9a0d35d0-175a-11e4-8c21-0800200c9a66"))


def test_chap_secrets_are_fresh_and_of_cinders_lengths():
    first, second = names.chap_credentials(), names.chap_credentials()
    assert first != second
    assert [len(part) for part in first] == [20, 16]
    assert all(part.isalnum() for part in first)


@pytest.mark.parametrize(
    "name, keys",
    [
        ("iqn.2026-01.org.x:y", {"initiator"}),
        ("nqn.2026-01.org.x:y", {"nqn"}),
        ("eui.02004567A425678D", {"initiator"}),
    ],
)
def test_an_initiator_name_goes_under_its_connector_key(name, keys):
    assert set(connectors.for_name(name)) == keys


def test_this_hosts_connector_reads_the_initiator_files(tmp_path, monkeypatch):
    iscsi = tmp_path / "initiatorname.iscsi"
    iscsi.write_text("## comment\nInitiatorName=iqn.2026-01.org.x:me\n")
    nvme = tmp_path / "hostnqn"
    nvme.write_text("nqn.2026-01.org.x:me\n")
    monkeypatch.setattr(connectors, "ISCSI_NAME_FILE", str(iscsi))
    monkeypatch.setattr(connectors, "NVME_HOSTNQN_FILE", str(nvme))
    connector = connectors.this_host("iscsi")
    assert connector["initiator"] == "iqn.2026-01.org.x:me"
    assert connector["nqn"] == "nqn.2026-01.org.x:me"
    assert connector["protocol"] == "iscsi"
    named = connectors.this_host(initiator="nqn.2026-01.org.x:other")
    assert "initiator" not in named and named["nqn"] == "nqn.2026-01.org.x:other"
