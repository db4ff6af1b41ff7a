"""The command executor, on real processes (shell scripts standing in for LVM's tools)."""

import pytest

from evs_driver import exception
from evs_driver.backends.lvm.executor import LvmExecutor


def sh(script: str) -> tuple[str, ...]:
    return ("sh", "-c", script)


def test_returns_stdout_with_a_c_locale():
    assert LvmExecutor("lvm").run(*sh("echo $LC_ALL out")) == "C out\n"


def test_lvm_failure_becomes_the_mapped_error():
    script = "echo '  Failed to find logical volume \"vg/x\"' >&2; exit 5"
    with pytest.raises(exception.NotFound) as info:
        LvmExecutor("lvm").run(*sh(script))
    assert info.value.lvm_message == 'Failed to find logical volume "vg/x"'


def busy_then_ok(tmp_path, failures: int) -> tuple[str, ...]:
    """A command that fails as 'busy' ``failures`` times, then succeeds; counts its runs."""
    count = tmp_path / "count"
    count.write_text("0")
    script = (
        f"n=$(cat {count}); n=$((n+1)); echo $n > {count}; "
        f"if [ $n -le {failures} ]; then echo '  Logical volume vg/lv in use.' >&2; exit 5; fi; "
        "echo done"
    )
    return sh(script)


def test_transient_failures_are_retried(tmp_path):
    executor = LvmExecutor("lvm", retries=3, retry_delay=0.01)
    assert executor.run(*busy_then_ok(tmp_path, 2), retry=True) == "done\n"
    assert (tmp_path / "count").read_text().strip() == "3"


def test_retries_run_out(tmp_path):
    executor = LvmExecutor("lvm", retries=1, retry_delay=0.01)
    with pytest.raises(exception.BackendError, match="in use"):
        executor.run(*busy_then_ok(tmp_path, 5), retry=True)
    assert (tmp_path / "count").read_text().strip() == "2"


def test_no_retry_unless_asked_or_transient(tmp_path):
    executor = LvmExecutor("lvm", retries=3, retry_delay=0.01)
    with pytest.raises(exception.BackendError):
        executor.run(*busy_then_ok(tmp_path, 1))
    assert (tmp_path / "count").read_text().strip() == "1"


def test_timeout_kills_the_command(tmp_path):
    marker = tmp_path / "finished"
    executor = LvmExecutor("lvm", timeout=1)
    with pytest.raises(exception.BackendError, match="did not finish within 1s"):
        executor.run(*sh(f"sleep 3; touch {marker}"))
    # Had the child survived the timeout it would have created the marker by now.
    LvmExecutor("lvm").run("sleep", "3")
    assert not marker.exists()


def test_root_helper_prefixes_the_command():
    executor = LvmExecutor("lvm", root_helper="env EVS_HELPER=used")
    assert executor.run(*sh("echo $EVS_HELPER")) == "used\n"


def test_missing_command_or_helper_is_a_clear_error():
    with pytest.raises(exception.BackendError, match="cannot run `no-such-lvm-tool"):
        LvmExecutor("lvm").run("no-such-lvm-tool")
    with pytest.raises(exception.BackendError, match="cannot run `/nonexistent/rootwrap lvs"):
        LvmExecutor("lvm", root_helper="/nonexistent/rootwrap").run("lvs")
