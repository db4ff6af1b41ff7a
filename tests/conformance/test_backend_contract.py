"""The Backend contract (evs_driver/backends/base.py), proved on every registered backend."""

import time

import pytest

from evs_driver import exception

MiB = 1 << 20
SIZE = 16 * MiB
BLOCK = 4096


def data(tag: str) -> bytes:
    """A recognisable block of content."""
    return (tag.encode() * BLOCK)[:BLOCK]


ZERO = bytes(BLOCK)


def write(backend, device_id: str, offset: int, payload: bytes) -> None:
    with backend.open_device(device_id, writable=True) as dev:
        dev.write(offset, payload)
        dev.flush()


def read(backend, device_id: str, offset: int, length: int = BLOCK) -> bytes:
    with backend.open_device(device_id, writable=False) as dev:
        return dev.read(offset, length)


def size_of(backend, device_id: str) -> int:
    with backend.open_device(device_id, writable=False) as dev:
        return dev.size


def free_after_writes(backend, before: int, patience: float = 60.0) -> int:
    """Free bytes once they fall below ``before``, or when ``patience`` seconds have passed.

    Ceph's pool statistics reach the monitors seconds after the writes (rbd); the other
    backends report at once and return on the first read.
    """
    deadline = time.monotonic() + patience
    while True:
        free = backend.pool_stats().free_bytes
        if free < before or time.monotonic() > deadline:
            return free
        time.sleep(0.5)


def test_new_volume_reads_zeros_and_keeps_writes(backend, new_id):
    vol = new_id()
    backend.create_volume(vol, SIZE)
    assert backend.exists(vol)
    with backend.open_device(vol, writable=True) as dev:
        assert dev.size == SIZE
        assert not dev.read_only
        assert dev.read(0, BLOCK) == ZERO
        assert dev.read(SIZE - BLOCK, BLOCK) == ZERO
        dev.write(MiB, data("a"))
        dev.write(SIZE - BLOCK, data("z"))
        dev.flush()
    assert read(backend, vol, MiB) == data("a")
    assert read(backend, vol, SIZE - BLOCK) == data("z")
    assert read(backend, vol, 2 * MiB) == ZERO


def test_io_outside_the_device_is_refused(backend, new_id):
    vol = new_id()
    backend.create_volume(vol, SIZE)
    with backend.open_device(vol, writable=True) as dev:
        with pytest.raises(exception.OutOfRange):
            dev.write(SIZE - 10, b"x" * 20)
        with pytest.raises(exception.OutOfRange):
            dev.read(SIZE, 1)
    assert read(backend, vol, SIZE - BLOCK) == ZERO


def test_snapshot_isolation_follows_the_evs_example(backend, new_id):
    """v1 gets d1, d2; s1; d3 written and d2 changed to d4; s2 (EVS_RULES 1.2)."""
    v1, s1, s2 = new_id(), new_id(), new_id()
    backend.create_volume(v1, SIZE)
    write(backend, v1, 0, data("d1"))
    write(backend, v1, MiB, data("d2"))
    backend.create_snapshot(v1, s1)
    write(backend, v1, 2 * MiB, data("d3"))
    write(backend, v1, MiB, data("d4"))
    backend.create_snapshot(v1, s2)
    assert [read(backend, s1, off) for off in (0, MiB, 2 * MiB)] == [data("d1"), data("d2"), ZERO]
    expected = [data("d1"), data("d4"), data("d3")]
    assert [read(backend, s2, off) for off in (0, MiB, 2 * MiB)] == expected
    assert [read(backend, v1, off) for off in (0, MiB, 2 * MiB)] == expected


def test_snapshot_is_read_only(backend, new_id):
    vol, snap = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    backend.create_snapshot(vol, snap)
    # A backend may refuse at open or at the first write; either way nothing is written.
    try:
        dev = backend.open_device(snap, writable=True)
    except exception.ReadOnlyDevice:
        pass
    else:
        with dev, pytest.raises(exception.ReadOnlyDevice):
            dev.write(0, data("x"))
    with backend.open_device(snap, writable=False) as dev:
        assert dev.read_only
        assert dev.size == SIZE
        assert dev.read(0, BLOCK) == ZERO


def test_snapshot_of_missing_volume_is_not_found(backend, new_id):
    missing, snap = new_id(), new_id()
    with pytest.raises(exception.NotFound):
        backend.create_snapshot(missing, snap)
    assert not backend.exists(snap)


@pytest.mark.parametrize("factor", [1, 2])
def test_volume_from_snapshot_has_its_data_and_zeros_beyond(backend, new_id, factor):
    vol, snap, made = new_id(), new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, MiB, data("s"))
    write(backend, vol, SIZE - BLOCK, data("e"))
    backend.create_snapshot(vol, snap)
    write(backend, vol, MiB, data("later"))
    backend.create_volume_from_snapshot(snap, made, SIZE * factor)
    assert size_of(backend, made) == SIZE * factor
    assert read(backend, made, MiB) == data("s")
    assert read(backend, made, SIZE - BLOCK) == data("e")
    if factor > 1:
        assert read(backend, made, SIZE) == ZERO
        assert read(backend, made, SIZE * factor - BLOCK) == ZERO
    # Independent: its writes stay its own, and deleting the snapshot and source changes nothing.
    write(backend, made, 0, data("own"))
    assert read(backend, snap, 0) == ZERO
    backend.delete_snapshot(snap)
    backend.delete_volume(vol)
    assert read(backend, made, MiB) == data("s")
    assert read(backend, made, 0) == data("own")


def test_volume_from_snapshot_smaller_than_it_is_refused(backend, new_id):
    vol, snap, made = new_id(), new_id(), new_id()
    backend.create_volume(vol, SIZE)
    backend.create_snapshot(vol, snap)
    with pytest.raises(exception.InvalidSize):
        backend.create_volume_from_snapshot(snap, made, SIZE // 2)
    assert not backend.exists(made)


def test_clone_shares_nothing_visible_with_its_source(backend, new_id):
    src, clone = new_id(), new_id()
    backend.create_volume(src, SIZE)
    write(backend, src, 0, data("orig"))
    backend.clone_volume(src, clone, SIZE)
    write(backend, src, 0, data("src-after"))
    write(backend, clone, MiB, data("clone-own"))
    assert read(backend, clone, 0) == data("orig")
    assert read(backend, src, MiB) == ZERO
    backend.delete_volume(src)
    assert read(backend, clone, 0) == data("orig")


def test_revert_to_any_snapshot_keeps_every_snapshot_and_the_size(backend, new_id):
    vol = new_id()
    snaps = [new_id() for _ in range(3)]
    backend.create_volume(vol, SIZE)
    for i, snap in enumerate(snaps):
        write(backend, vol, 0, data(f"gen{i}"))
        backend.create_snapshot(vol, snap)
    backend.extend_volume(vol, 2 * SIZE)
    write(backend, vol, SIZE + MiB, data("beyond"))
    for target in (0, 2, 0, 1):
        backend.revert_to_snapshot(vol, snaps[target])
        assert read(backend, vol, 0) == data(f"gen{target}")
        assert size_of(backend, vol) == 2 * SIZE
        assert read(backend, vol, SIZE + MiB) == ZERO  # past the snapshot's size
        for i, snap in enumerate(snaps):
            assert backend.exists(snap)
            assert read(backend, snap, 0) == data(f"gen{i}")
    # The volume stays writable and its snapshots unaffected by new writes.
    write(backend, vol, 0, data("new"))
    assert read(backend, snaps[1], 0) == data("gen1")


def test_extend_with_snapshots_keeps_their_size(backend, new_id):
    vol, snap = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 0, data("x"))
    backend.create_snapshot(vol, snap)
    backend.extend_volume(vol, 2 * SIZE)
    assert size_of(backend, vol) == 2 * SIZE
    assert size_of(backend, snap) == SIZE
    assert read(backend, vol, 0) == data("x")
    assert read(backend, vol, 2 * SIZE - BLOCK) == ZERO
    write(backend, vol, 2 * SIZE - BLOCK, data("end"))
    assert read(backend, vol, 2 * SIZE - BLOCK) == data("end")


def test_extend_never_shrinks(backend, new_id):
    vol = new_id()
    backend.create_volume(vol, 2 * SIZE)
    with pytest.raises(exception.InvalidSize):
        backend.extend_volume(vol, SIZE)
    assert size_of(backend, vol) == 2 * SIZE


def test_delete_is_idempotent(backend, new_id):
    vol, snap = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    backend.create_snapshot(vol, snap)
    for _ in range(2):
        backend.delete_snapshot(snap)
        backend.delete_volume(vol)
    assert not backend.exists(vol)
    assert not backend.exists(snap)
    backend.delete_volume(new_id())
    backend.delete_snapshot(new_id())


def test_deleting_a_volume_keeps_its_snapshots(backend, new_id):
    vol, snap = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 0, data("kept"))
    backend.create_snapshot(vol, snap)
    backend.delete_volume(vol)
    assert read(backend, snap, 0) == data("kept")


def test_deleting_a_snapshot_keeps_volumes_made_from_it(backend, new_id):
    vol, snap, made = new_id(), new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 0, data("base"))
    backend.create_snapshot(vol, snap)
    backend.create_volume_from_snapshot(snap, made, SIZE)
    backend.delete_snapshot(snap)
    assert read(backend, made, 0) == data("base")
    assert read(backend, vol, 0) == data("base")


def test_full_copy_holds_the_same_data(backend, new_id):
    vol, snap, copy = new_id(), new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 3 * MiB, data("c"))
    backend.create_snapshot(vol, snap)
    seen = []
    backend.full_copy(snap, copy, SIZE, lambda done, total: seen.append((done, total)))
    assert read(backend, copy, 3 * MiB) == data("c")
    assert seen[-1] == (SIZE, SIZE)
    backend.delete_snapshot(snap)
    assert read(backend, copy, 3 * MiB) == data("c")


def test_discard_reads_as_zeros_and_spares_snapshots(backend, new_id):
    vol, snap = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 0, b"\xff" * (4 * MiB))
    backend.create_snapshot(vol, snap)
    with backend.open_device(vol, writable=True) as dev:
        dev.discard(BLOCK, 2 * MiB)  # unaligned start, crosses whole chunks
        dev.write_zeroes(3 * MiB, 100)
        dev.flush()
        assert dev.read(0, BLOCK) == b"\xff" * BLOCK
        assert dev.read(BLOCK, 2 * MiB) == bytes(2 * MiB)
        assert dev.read(2 * MiB + BLOCK, BLOCK) == b"\xff" * BLOCK
        assert dev.read(3 * MiB, 100) == bytes(100)
        assert dev.read(3 * MiB + 100, 10) == b"\xff" * 10
    assert read(backend, snap, BLOCK, 2 * MiB) == b"\xff" * (2 * MiB)


def test_usage_and_stats_track_volumes_and_data(backend, new_id):
    before = backend.pool_stats()
    vol, snap = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    write(backend, vol, 0, b"\x01" * (2 * MiB))
    backend.create_snapshot(vol, snap)
    write(backend, vol, 0, b"\x02" * MiB)  # redirected: the snapshot keeps the old MiB
    after = backend.pool_stats()
    assert after.volume_count == before.volume_count + 1
    assert after.snapshot_count == before.snapshot_count + 1
    assert after.provisioned_bytes >= before.provisioned_bytes + SIZE
    assert 0 <= after.free_bytes <= after.total_bytes
    assert free_after_writes(backend, before.free_bytes) < before.free_bytes
    usage = backend.device_usage(vol)
    assert usage.size == SIZE
    assert usage.mapped_bytes >= 2 * MiB
    assert usage.exclusive_bytes >= MiB
    snap_usage = backend.device_usage(snap)
    assert snap_usage.size == SIZE
    assert snap_usage.mapped_bytes >= 2 * MiB
    assert snap_usage.exclusive_bytes >= MiB
    with pytest.raises(exception.NotFound):
        backend.device_usage(new_id())


def test_check_is_clean(backend, new_id):
    vol, snap = new_id(), new_id()
    backend.create_volume(vol, SIZE)
    backend.create_snapshot(vol, snap)
    report = backend.check()
    assert report.clean, report.problems


def test_missing_devices_are_not_found(backend, new_id):
    missing = new_id()
    assert not backend.exists(missing)
    with pytest.raises(exception.NotFound):
        backend.open_device(missing, writable=False)
    with pytest.raises(exception.NotFound):
        backend.extend_volume(missing, SIZE)
    with pytest.raises(exception.NotFound):
        backend.create_volume_from_snapshot(missing, new_id(), SIZE)
    with pytest.raises(exception.NotFound):
        backend.revert_to_snapshot(missing, new_id())
