"""Bad input to every command: a one-line error, a non-zero status, and nothing changed."""

import unittest

import ddt
import pytest

from tests.functional.cli.support import env_for, evs, manager, one_line_error, snapshot_state

LONG = "x" * 256

# (command, exit status, text in the error line)
BAD = [
    ("volume create --size 0", 1, "at least 1 GiB"),
    ("volume create --size -1", 1, "at least 1 GiB"),
    ("volume create --size 1.5", 2, "whole number"),
    ("volume create --size abc", 2, "whole number"),
    ("volume create --size 99999999999", 1, "larger than the largest"),
    ("volume create --size 5000", 1, "max_over_subscription_ratio"),
    ("volume create", 1, "size is required"),
    (f"volume create --size 1 --name {LONG}", 1, "256 bytes"),
    (f"volume create --size 1 --description {LONG}", 1, "description"),
    ("volume create --size 1 --full-clone", 1, "needs a snapshot"),
    ("volume create --snapshot nope", 1, "Snapshot nope not found"),
    ("volume create --source-volume nope", 1, "Volume nope not found"),
    ("volume create --snapshot s --source-volume v", 2, "not allowed with"),
    ("volume create --size 1 --backend nope", 1, "no enabled backend"),
    ("volume create --size 1 --property novalue", 2, "KEY=VALUE"),
    ("volume show nope", 1, "not found"),
    ("volume show dup", 1, "use the id"),
    ("volume delete nope", 1, "not found"),
    ("volume delete dup", 1, "use the id"),
    ("volume extend v --size 0", 1, "at least 1 GiB"),
    ("volume extend v --size 1", 1, "must be larger"),
    ("volume extend v --size x", 2, "whole number"),
    ("volume extend nope --size 2", 1, "not found"),
    ("volume extend v", 2, "--size"),
    ("volume revert v --snapshot nope", 1, "not found"),
    ("volume revert nope --snapshot s", 1, "not found"),
    ("volume import v /nonexistent.raw", 1, "cannot read"),
    ("volume import nope /nonexistent.raw", 1, "not found"),
    ("volume export v /nonexistent-dir/out.raw", 1, "cannot write"),
    ("volume reset-state v --state bogus", 1, "not a volume status"),
    ("snapshot create nope", 1, "not found"),
    (f"snapshot create v --name {LONG}", 1, "256 bytes"),
    ("snapshot show nope", 1, "not found"),
    ("snapshot delete nope", 1, "not found"),
    ("snapshot export nope /tmp/x.raw", 1, "not found"),
    ("snapshot list --volume nope", 1, "not found"),
    ("snapshot reset-state s --state in-use", 1, "not a snapshot status"),
    ("volume attach v --protocol fibre", 2, "invalid choice"),
    ("volume attach v --initiator not-an-iqn", 1, "is not a valid initiator name"),
    ("volume attach v --protocol iscsi --initiator iqn.2026-13.org.x:y", 1, "iSCSI qualified"),
    ("volume attach v --protocol nvmeof --initiator nqn.bad", 1, "NVMe qualified name"),
    ("volume attach v --protocol nvmeof --initiator iqn.2026-01.org.x:y", 1, "needs the"),
    # This host has no LIO and no kernel NBD: the guest's tests attach for real.
    ("volume attach v --protocol iscsi --initiator iqn.2026-01.org.x:y", 1, "does not have"),
    ("volume attach v --protocol local", 1, "needs the evs-volume service"),
    ("volume attach nope", 1, "not found"),
    ("volume", 2, "required"),
    ("bogus", 2, "invalid choice"),
    ("volume list -f yaml", 2, "invalid choice"),
]


@ddt.ddt
class TestBadInput(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _state(self, tmp_path):
        self.tmp_path = tmp_path
        self.state = tmp_path / "state"
        m = manager(self.state)
        try:
            m.create_volume(1, name="v")
            m.create_snapshot("v", name="s")
            m.create_volume(1, name="dup")
            m.create_volume(1, name="dup")
        finally:
            m.close()

    @ddt.idata(BAD)
    @ddt.unpack
    def test_bad_command(self, command, code, text):
        before = snapshot_state(self.state)
        line = one_line_error(evs(self.state, *command.split(" ")), code)
        assert line.startswith("evs") and text in line, line
        assert snapshot_state(self.state) == before

    @ddt.data(
        ("", "config file not found", False),
        ("[DEFAULT\nx", "cannot parse", True),
        ("[DEFAULT]\nenabled_backends = b\n[b]\nvolume_backend = nope\n", "volume_backend", True),
        (
            "[DEFAULT]\nenabled_backends = b\n[b]\nlocal_pool_chunk_size = 5000\n",
            "local_pool_chunk_size",
            True,
        ),
        (
            "[DEFAULT]\nenabled_backends = b\n[b]\nlocal_pool_capacity_gb = 0\n",
            "local_pool_capacity_gb",
            True,
        ),
        ("[DEFAULT]\nenabled_backends = b\n[b]\nvolume_driver = nope\n", "volume_driver", True),
        ("[DEFAULT]\nmax_snapshots_per_volume = -1\n", "max_snapshots_per_volume", True),
        ("[DEFAULT]\nstate_path = /proc/evs\n", "state_path", True),
    )
    @ddt.unpack
    def test_bad_config_names_option_and_file(self, text, message, write):
        conf = self.tmp_path / "bad.conf"
        if write:
            conf.write_text(text)
        env = env_for(self.tmp_path / "other")
        line = one_line_error(evs(None, "--config-file", conf, "volume", "list", env=env))
        assert message in line and str(conf) in line, line
        assert not (self.tmp_path / "other" / "pools" / "b").exists()
