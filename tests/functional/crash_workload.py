"""The workload the crash test kills: a deterministic stream of operations on one pool.

Both the child (which runs it) and the parent (which checks what survived) derive the same
operations from the seed. The child prints ``ack N`` after operation N returned; a ``flush``
or a control operation that was acknowledged is durable.
"""

import random
import sys

CHUNK = 4096
BLOCKS = 96
VOLUME_SIZE = BLOCKS * CHUNK


def operations(
    seed: int, count: int, fua_share: float = 0.0, reverts: bool = True, first_tag: int = 0
):
    """Yield (kind, argument) tuples; writes ("write", or "fua" with FUA) carry (block, tag).

    ``fua_share``: the part of the writes sent with FUA; ``reverts``: whether to revert;
    ``first_tag``: the tag of operation 0 (runs that share a volume keep their tags apart).
    """
    rng = random.Random(seed)
    snapshots: list[str] = []
    serial = 0
    for index in range(count):
        roll = rng.random()
        if roll < 0.70:
            fua = fua_share and rng.random() < fua_share
            yield "fua" if fua else "write", (rng.randrange(BLOCKS), first_tag + index)
        elif roll < 0.80:
            yield "flush", None
        elif roll < 0.88:
            serial += 1
            snapshots.append(f"s{seed}-{serial}")
            yield "snapshot", snapshots[-1]
        elif roll < 0.94 and snapshots and reverts:
            yield "revert", rng.choice(snapshots)
        elif snapshots and len(snapshots) > 3:
            yield "delete", snapshots.pop(0)
        else:
            yield "discard", rng.randrange(BLOCKS)


def record(block: int, tag: int) -> bytes:
    """A self-describing block: which write put it there."""
    head = f"block {block} write {tag};".encode()
    return (head * (CHUNK // len(head) + 1))[:CHUNK]


def run(path: str, seed: int, count: int) -> None:
    from evs_driver.rowstore import Pool

    pool = Pool.open(path, commit_interval=0.05)
    for index, (kind, argument) in enumerate(operations(seed, count)):
        if kind == "write":
            block, tag = argument
            pool.write("v", block * CHUNK, record(block, tag))
        elif kind == "flush":
            pool.flush()
        elif kind == "snapshot":
            pool.create_snapshot("v", argument)
        elif kind == "revert":
            pool.revert("v", argument)
        elif kind == "delete":
            pool.delete(argument)
        else:
            pool.discard("v", argument * CHUNK, CHUNK)
        sys.stdout.write(f"ack {index}\n")
        sys.stdout.flush()


if __name__ == "__main__":
    run(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]))
