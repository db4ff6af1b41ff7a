"""LocalBackend: the Backend contract over a real rowstore pool in a temporary directory."""

import os
import threading

import pytest

from evs_driver import exception
from evs_driver.backends.local import LocalBackend
from evs_driver.conf import BackendConf
from evs_driver.rowstore.geometry import DEFAULT_BITS
from evs_driver.rowstore.nodes import cache_nodes
from tests.unit.test_conf import make_conf

MiB = 1024**2
GiB = 1024**3


def _backend(tmp_path, text: str = "", name: str = "local", **overrides) -> LocalBackend:
    conf = make_conf(tmp_path / "state", text, **overrides)
    return LocalBackend(BackendConf(conf, name), name)


@pytest.fixture
def backend(tmp_path):
    b = _backend(tmp_path)
    b.setup()
    yield b
    b.close()


def test_setup_creates_pool_with_configured_capacity_and_chunk(tmp_path):
    b = _backend(tmp_path, "[local]\nlocal_pool_capacity_gb = 3\nlocal_pool_chunk_size = 16384\n")
    b.setup()
    assert b.path == str(tmp_path / "state" / "pools" / "local")
    assert b.pool_stats().total_bytes == 3 * GiB
    b.create_volume("v", MiB)
    with b.open_device("v", writable=True) as dev:
        dev.write(0, b"x")
    assert b.device_usage("v").mapped_bytes == 16384  # one chunk of the configured size


def test_the_node_cache_is_bounded_by_its_option(tmp_path):
    b = _backend(tmp_path, "[local]\nlocal_pool_node_cache_mb = 2\n")
    b.setup()
    try:
        with b._open() as pool:
            assert pool._nodes.cache_limit == cache_nodes(2 * MiB, DEFAULT_BITS)
    finally:
        b.close()


def test_setup_uses_local_pool_path(tmp_path):
    b = _backend(tmp_path, f"[local]\nlocal_pool_path = {tmp_path}/elsewhere\n")
    b.setup()
    assert os.path.isdir(tmp_path / "elsewhere")


def test_existing_pool_keeps_its_capacity(tmp_path):
    first = _backend(tmp_path)
    first.setup()
    first.close()  # setup left the pool open for a first user that never came
    again = _backend(tmp_path, "[local]\nlocal_pool_capacity_gb = 1\n")
    again.setup()
    assert again.pool_stats().total_bytes == 4 * GiB


@pytest.mark.parametrize(
    "text, option",
    [
        ("[local]\nlocal_pool_chunk_size = 12288\n", "local_pool_chunk_size"),
        ("[local]\nlocal_pool_path = /proc/evs-pool\n", "local_pool_path"),
        ("[local]\nlocal_pool_create = false\n", "state_path"),
    ],
)
def test_bad_settings_fail_setup_naming_the_option(tmp_path, text, option):
    b = _backend(tmp_path, text)
    with pytest.raises(exception.ConfigError, match=f"{option}"):
        b.setup()
    assert not os.path.exists(tmp_path / "state" / "pools" / "local")


def test_directory_that_is_not_a_pool_is_refused(tmp_path):
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "file").write_text("x")
    b = _backend(tmp_path, f"[local]\nlocal_pool_path = {tmp_path}/junk\n")
    with pytest.raises(exception.ConfigError, match="local_pool_path"):
        b.setup()


def test_snapshot_clone_revert_and_usage(backend):
    backend.create_volume("v", 2 * MiB)
    with backend.open_device("v", writable=True) as dev:
        dev.write(0, b"a" * 65536)
    backend.create_snapshot("v", "s")
    with backend.open_device("v", writable=True) as dev:
        dev.write(0, b"b" * 65536)
    assert backend.device_usage("s").exclusive_bytes == 65536
    backend.create_volume_from_snapshot("s", "c", 4 * MiB)
    backend.clone_volume("v", "c2", 2 * MiB)
    backend.extend_volume("v", 3 * MiB)
    backend.revert_to_snapshot("v", "s")
    with backend.open_device("v", writable=False) as dev:
        assert dev.size == 3 * MiB  # the revert keeps the extended size
        assert dev.read(0, 4) == b"aaaa"
    with backend.open_device("c", writable=False) as dev:
        assert dev.size == 4 * MiB and dev.read(0, 2) == b"aa"
    with backend.open_device("c2", writable=False) as dev:
        assert dev.read(0, 2) == b"bb"
    stats = backend.pool_stats()
    assert (stats.volume_count, stats.snapshot_count) == (3, 1)
    assert stats.provisioned_bytes == 9 * MiB
    assert backend.check().clean


def test_snapshots_and_read_only_devices_refuse_writes(backend):
    backend.create_volume("v", MiB)
    backend.create_snapshot("v", "s")
    for name, writable in (("s", True), ("v", False)):
        with (
            backend.open_device(name, writable=writable) as dev,
            pytest.raises(exception.ReadOnlyDevice),
        ):
            dev.write(0, b"x")


def test_delete_of_missing_device_succeeds(backend):
    backend.delete_volume("nope")
    backend.delete_snapshot("nope")
    assert not backend.exists("nope")


def test_full_copy_shares_nothing_and_reports_progress(backend):
    backend.create_volume("v", 8 * MiB)
    with backend.open_device("v", writable=True) as dev:
        dev.write(5 * MiB, b"z" * 4096)
    seen = []
    backend.full_copy("v", "copy", 8 * MiB, lambda done, total: seen.append((done, total)))
    assert seen[-1] == (8 * MiB, 8 * MiB)
    assert backend.device_usage("copy").exclusive_bytes == 65536
    with backend.open_device("copy", writable=False) as dev:
        assert dev.read(5 * MiB, 4) == b"zzzz"


def test_other_process_waits_for_the_pool_then_times_out(tmp_path):
    """A second backend on the same pool (as another process would be) waits on the lock."""
    first = _backend(tmp_path)
    first.setup()
    first.hold_open()
    second = _backend(tmp_path, lock_timeout=0)
    try:
        with pytest.raises(exception.ConcurrentOperation, match="lock_timeout"):
            second.setup()
    finally:
        first.close()
    second.setup()  # free again once the holder closed
    assert second.pool_stats().volume_count == 0


def test_threads_share_one_open_pool(backend):
    backend.create_volume("v", MiB)
    errors = []

    def work(i):
        try:
            with backend.open_device("v", writable=True) as dev:
                dev.write(i * 4096, bytes([i]) * 4096)
        except Exception as exc:  # collected for the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with backend.open_device("v", writable=False) as dev:
        assert [dev.read(i * 4096, 1) for i in range(8)] == [bytes([i]) for i in range(8)]


def test_open_device_does_not_block_other_threads(backend):
    """A service keeps devices open for long; control calls from other threads still run."""
    backend.create_volume("v", MiB)
    backend.hold_open()
    dev = backend.open_device("v", writable=True)
    done = []

    def control():
        backend.create_snapshot("v", "s")
        done.append(backend.exists("s"))

    worker = threading.Thread(target=control)
    worker.start()
    worker.join(timeout=60)
    assert done == [True]
    closer = threading.Thread(target=dev.close)  # closed by another thread than its opener
    closer.start()
    closer.join()
    backend.close()
    other = LocalBackend(backend.conf, backend.backend_name)
    other.setup()  # the pool is free again for another process
    assert other.exists("s")
