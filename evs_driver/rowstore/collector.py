"""Garbage collection: walk nodes whose count reached zero and drop what they referenced.

Deleting a device only drops its root (O(1)); the collector then frees, a batch at a time,
the nodes and chunks nobody else refers to. A node stays in the garbage set, with its
children still counted, until it is collected, so a crash in between loses nothing: the
persisted garbage table lets the next open carry on.
"""

from evs_driver.rowstore.datamap import DataMap
from evs_driver.rowstore.nodes import NodeStore


def collect_batch(nodes: NodeStore, datamap: DataMap, budget: int) -> tuple[int, bool]:
    """Collect up to ``budget`` garbage nodes; return how many, and whether garbage remains.

    The caller holds the pool's metadata lock; the changes commit with the next transaction.
    """
    done = 0
    while done < budget:
        node_id = nodes.next_garbage()
        if node_id is None:
            break
        node = nodes.get(node_id)
        for entry in node.entries:
            if entry:
                if node.level:
                    nodes.drop(entry)
                else:
                    datamap.drop(entry - 1)
        nodes.free(node_id)
        done += 1
    return done, nodes.garbage_count > 0
