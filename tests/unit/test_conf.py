"""Options: registration, the backend_defaults fallback, errors naming option and file, sample."""

import os
import subprocess
import sys

import pytest
from oslo_config import cfg

from evs_driver import exception
from evs_driver.conf import BackendConf, register_opts, validate
from evs_driver.conf.opts import list_opts

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GENERATOR_CONF = os.path.join(ROOT, "tools", "config", "evs_driver-config-generator.conf")
SAMPLE = os.path.join(ROOT, "etc", "evs_driver", "evs_driver.conf.sample")


def make_conf(state_path, config_text: str | None = None, **overrides) -> cfg.ConfigOpts:
    """A private ConfigOpts with evs options, a small pool and ``state_path``."""
    conf = cfg.ConfigOpts()
    register_opts(conf)
    args = []
    if config_text is not None:
        path = os.path.join(str(state_path) + ".conf")
        with open(path, "w") as f:
            f.write(config_text)
        args = ["--config-file", path]
    conf(args, project="evs_driver", default_config_files=[])
    conf.set_override("state_path", str(state_path))
    conf.set_override("local_pool_capacity_gb", 4, group="backend_defaults")
    conf.set_override("lock_timeout", 30)
    for name, value in overrides.items():
        conf.set_override(name, value)
    return conf


def test_every_option_has_help_and_a_type():
    for _group, opts in list_opts():
        for opt in opts:
            assert opt.help, opt.name
            assert opt.type is not None, opt.name


def test_backend_group_falls_back_to_backend_defaults(tmp_path):
    conf = make_conf(
        tmp_path / "state",
        "[backend_defaults]\nreserved_percentage = 5\nmax_over_subscription_ratio = 3\n"
        "[fast]\nmax_over_subscription_ratio = 2\n",
    )
    group = BackendConf(conf, "fast")
    assert group.reserved_percentage == 5  # from [backend_defaults]
    assert group.max_over_subscription_ratio == 2.0  # the group's own value wins
    assert group.volume_backend == "local"  # the option's default
    assert group.state_path == str(tmp_path / "state")  # [DEFAULT] options read through
    assert group.safe_get("no_such_option") is None
    assert group.config_group == "fast"


@pytest.mark.parametrize(
    "text, option",
    [
        ("[b]\nreserved_percentage = 101\n", "reserved_percentage"),
        ("[b]\nmax_over_subscription_ratio = 0.5\n", "max_over_subscription_ratio"),
        ("[b]\nlocal_pool_chunk_size = 1024\n", "local_pool_chunk_size"),
        ("[b]\nlocal_pool_capacity_gb = zero\n", "local_pool_capacity_gb"),
    ],
)
def test_bad_value_names_option_group_and_file(tmp_path, text, option):
    conf = make_conf(tmp_path / "state", text)
    with pytest.raises(exception.ConfigError) as err:
        getattr(BackendConf(conf, "b"), option)
    assert f"[b] {option}" in str(err.value)
    assert str(tmp_path / "state.conf") in str(err.value)


def test_bad_default_value_fails_validation_naming_option(tmp_path):
    conf = make_conf(tmp_path / "state", "[DEFAULT]\nmax_snapshots_per_volume = -1\n")
    with pytest.raises(exception.ConfigError, match=r"\[DEFAULT\] max_snapshots_per_volume"):
        validate(conf)


def test_backend_validate_reads_every_option(tmp_path):
    conf = make_conf(tmp_path / "state", "[b]\nreserved_percentage = -1\n")
    with pytest.raises(exception.ConfigError, match=r"\[b\] reserved_percentage"):
        BackendConf(conf, "b").validate()


def test_sample_config_is_up_to_date(tmp_path):
    """Fails when an option changed without ``tox -e genconfig``; regenerate to fix."""
    fresh = tmp_path / "sample.conf"
    generator = os.path.join(os.path.dirname(sys.executable), "oslo-config-generator")
    subprocess.run(
        [generator, "--config-file", GENERATOR_CONF, "--output-file", str(fresh)],
        check=True,
        cwd=ROOT,
    )
    with open(SAMPLE) as committed:
        assert fresh.read_text() == committed.read(), (
            "etc/evs_driver/evs_driver.conf.sample is stale: run tox -e genconfig"
        )


def test_lvm_options_are_listed_when_present():
    lvm = pytest.importorskip("evs_driver.conf.lvm_opts")
    listed = {
        opt.name for group, opts in list_opts() if group == "backend_defaults" for opt in opts
    }
    assert {opt.name for opt in lvm.LVM_OPTS} <= listed
