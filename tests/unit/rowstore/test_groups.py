"""Group snapshots, clones and reverts: one transaction, one write barrier for all members."""

import threading

import pytest

from evs_driver import exception

CHUNK = 4096


def _volumes(pool, *names):
    for index, name in enumerate(names):
        pool.create_volume(name, 16 * CHUNK)
        pool.write(name, 0, bytes([index + 1]) * CHUNK)


def test_a_group_snapshot_shares_every_member_at_once(pool):
    _volumes(pool, "a", "b", "c")
    made = pool.snapshot_all([("a", "a1"), ("b", "b1"), ("c", "c1")])
    assert [(i.name, i.kind, i.origin) for i in made] == [
        ("a1", "snapshot", "a"),
        ("b1", "snapshot", "b"),
        ("c1", "snapshot", "c"),
    ]
    pool.write("a", 0, b"x" * CHUNK)
    assert pool.read("a1", 0, CHUNK) == b"\1" * CHUNK
    assert pool.read("c1", 0, CHUNK) == b"\3" * CHUNK
    assert pool.check().clean


@pytest.mark.parametrize(
    "pairs,error",
    [
        ([("a", "a1"), ("b", "a")], exception.AlreadyExists),  # a name in use
        ([("a", "x"), ("b", "x")], exception.InvalidInput),  # one name twice
        ([("a", "a1"), ("a", "a2")], exception.InvalidInput),  # one volume twice
        ([("a", "a1"), ("s", "s1")], exception.InvalidOperation),  # a snapshot
        ([("a", "a1"), ("nope", "n1")], exception.NotFound),
        ([], exception.InvalidInput),
    ],
)
def test_a_group_snapshot_that_cannot_take_every_member_takes_none(pool, pairs, error):
    _volumes(pool, "a", "b")
    pool.create_snapshot("a", "s")
    before = sorted(d.name for d in pool.devices())
    with pytest.raises(error):
        pool.snapshot_all(pairs)
    assert sorted(d.name for d in pool.devices()) == before
    pool.close()
    pool = type(pool).open(pool.path, background=False)  # nothing reached the metadata either
    assert sorted(d.name for d in pool.devices()) == before
    assert pool.check().clean
    pool.close()


def test_group_clones_and_reverts(pool):
    _volumes(pool, "a", "b")
    pool.snapshot_all([("a", "a1"), ("b", "b1")])
    pool.write("a", 0, b"A" * CHUNK)
    pool.write("b", 0, b"B" * CHUNK)
    clones = pool.clone_all([("a1", "ca", None), ("b", "cb", 32 * CHUNK)])
    assert [(c.name, c.size) for c in clones] == [("ca", 16 * CHUNK), ("cb", 32 * CHUNK)]
    assert pool.read("ca", 0, CHUNK) == b"\1" * CHUNK
    assert pool.read("cb", 0, CHUNK) == b"B" * CHUNK
    pool.revert_all([("a", "a1"), ("b", "b1")])
    assert pool.read("a", 0, CHUNK) == b"\1" * CHUNK
    assert pool.read("b", 0, CHUNK) == b"\2" * CHUNK
    with pytest.raises(exception.InvalidOperation):
        pool.revert_all([("a", "a1"), ("b", "a1")])  # a1 is not b's
    with pytest.raises(exception.InvalidSize):
        pool.clone_all([("a1", "small", CHUNK)])
    assert pool.check().clean


def test_no_write_of_either_member_crosses_a_group_snapshot(pool):
    """One writer alternates between two volumes, each write starting only once the one
    before returned (a dependent pair, like a database's log and data). Every group snapshot
    must then hold a prefix of that sequence on both: if it holds write n, it holds every
    write before n on the other volume too."""
    pool.create_volume("log", 200 * CHUNK)
    pool.create_volume("data", 200 * CHUNK)
    stop = threading.Event()
    done = []

    def writer():
        for n in range(1, 400):
            if stop.is_set():
                return
            volume = "log" if n % 2 else "data"
            pool.write(volume, (n // 2) * 512, n.to_bytes(4, "big") * 128)
            done.append(n)

    thread = threading.Thread(target=writer)
    thread.start()
    taken = []
    while thread.is_alive() and len(taken) < 60:
        acknowledged = len(done)  # every write up to here returned before the snapshot
        names = (f"log{len(taken)}", f"data{len(taken)}")
        pool.snapshot_all([("log", names[0]), ("data", names[1])])
        taken.append((names, acknowledged, len(done)))
    stop.set()
    thread.join()
    assert len(taken) > 1
    for (log, data), acknowledged, returned in taken:
        seen = _written(pool, log, 1) | _written(pool, data, 0)
        assert seen == set(range(1, len(seen) + 1)), "not a prefix: a write crossed the barrier"
        assert acknowledged <= len(seen) <= returned + 1


def _written(pool, name: str, parity: int) -> set[int]:
    """The sequence numbers a snapshot of one volume holds (each write has its 512 bytes)."""
    found = set()
    data = pool.read(name, 0, 200 * CHUNK)
    for n in range(parity or 2, 400, 2):
        stamp = int.from_bytes(data[(n // 2) * 512 : (n // 2) * 512 + 4], "big")
        if stamp:
            assert stamp == n
            found.add(n)
    return found
