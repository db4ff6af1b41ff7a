"""Garbage collection: walk nodes whose count reached zero and drop what they referenced.

Deleting a device only drops its root (O(1)); the collector then frees, a batch at a time,
the nodes and chunks nobody else refers to. A node stays in the garbage set, with its
children still counted, until it is collected, so a crash in between loses nothing: the
persisted garbage table lets the next open carry on.
"""


def collect_batch(pool, budget: int) -> tuple[int, bool]:
    """Collect up to ``budget`` garbage nodes; return how many, and whether garbage remains."""
    with pool._lock:
        nodes = pool._nodes
        done = 0
        while nodes.garbage and done < budget:
            node_id = next(iter(nodes.garbage))
            node = nodes.get(node_id)
            if node.level:
                for child in node.entries:
                    if child:
                        nodes.drop(child)
            else:
                for entry in node.entries:
                    if entry:
                        pool._drop_chunk(entry - 1)
            nodes.free(node_id)
            done += 1
        if done:
            pool._dirty = True
        return done, bool(nodes.garbage)
