"""The lvm_thin options: registered with every backend group, typed and bounded."""

import pytest
from oslo_config import cfg

from evs_driver.conf import BackendConf, register_opts
from evs_driver.conf.lvm_opts import LVM_OPTS
from evs_driver.conf.opts import backend_opts


def test_lvm_options_are_listed_for_backend_groups():
    names = {opt.name for opt in backend_opts()}
    assert {opt.name for opt in LVM_OPTS} <= names
    assert all(opt.help for opt in LVM_OPTS)


@pytest.fixture
def group():
    conf = cfg.ConfigOpts()
    register_opts(conf)
    conf([], project="evs_lvm_opts_test", default_config_files=[], default_config_dirs=[])
    return conf, BackendConf(conf, "lvm")


def test_defaults(group):
    _, lvm = group
    assert lvm.lvm_volume_group == "evs-volumes"
    assert lvm.lvm_thin_pool == "evs-pool"
    assert lvm.lvm_create_thin_pool is False
    assert lvm.lvm_root_helper == ""
    assert (lvm.lvm_volume_prefix, lvm.lvm_snapshot_prefix) == ("volume-", "_snapshot-")
    assert lvm.max_over_subscription_ratio == 20.0


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("lvm_thin_pool_size_percent", 0),
        ("lvm_thin_pool_size_percent", 101),
        ("lvm_command_timeout", 0),
        ("lvm_volume_prefix", "bad/prefix"),
        ("lvm_snapshot_prefix", "-dash"),
    ],
)
def test_out_of_bounds_values_are_refused(group, name, value):
    conf, _ = group
    with pytest.raises(ValueError):
        conf.set_override(name, value, group="lvm")
