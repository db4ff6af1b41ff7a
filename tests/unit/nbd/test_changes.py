"""``evs:changed-since:``: which snapshots a query names, and what a failed query says."""

import pytest

from evs_driver.blockdev import CHANGED
from evs_driver.nbd import changes, metacontext

BASES = [("id-1", "monday"), ("id-2", "twin"), ("id-3", "twin"), ("id-4", None), ("id-5", "id-1")]


def names(queries, listing, bases=BASES):
    namespace = changes.ChangedSinceNamespace(lambda: bases)
    found = metacontext.select([metacontext.BASE, namespace], queries, listing)
    return [context.name for context in found]


@pytest.mark.parametrize(
    "query, expected",
    [
        ("evs:changed-since:monday", ["evs:changed-since:monday"]),  # a name
        ("evs:changed-since:id-2", ["evs:changed-since:id-2"]),  # an id
        ("evs:changed-since:id-1", ["evs:changed-since:id-1"]),  # an id before a name
        ("evs:changed-since:twin", []),  # two snapshots have that name
        ("evs:changed-since:tuesday", []),  # no such snapshot: simply not returned
        ("evs:changed-since:", []),
        ("evs:", []),
        ("evs:other", []),
    ],
)
def test_set_selects_the_named_snapshot_only(query, expected):
    assert names([query], False) == expected


def test_listing_gives_each_snapshot_once_by_an_unambiguous_name():
    each = [
        "evs:changed-since:monday",
        "evs:changed-since:id-2",
        "evs:changed-since:id-3",
        "evs:changed-since:id-4",
        "evs:changed-since:id-5",  # its name is another snapshot's id
    ]
    assert names(["evs:"], True) == each
    assert names(["evs:changed-since:", "evs:"], True) == each
    assert names([], True) == ["base:allocation", *each]
    assert names(["evs:changed-since:monday"], True) == each[:1]
    assert names(["evs:"], True, bases=[]) == []


def test_the_query_asks_the_device_and_a_failure_says_changed():
    class Device:
        def changes(self, base, offset, length, limit):
            if base == "id-4":
                raise OSError(5, "gone")
            return [(length // 2, CHANGED), (length - length // 2, 0)]

    namespace = changes.ChangedSinceNamespace(lambda: BASES)
    [good] = namespace.contexts("changed-since:monday", False)
    [failing] = namespace.contexts("changed-since:id-4", False)
    assert metacontext.answer(good, Device(), 0, 100, False) == [(50, CHANGED), (50, 0)]
    assert metacontext.answer(failing, Device(), 0, 100, False) == [(100, CHANGED)]
    assert metacontext.answer(good, object(), 0, 100, False) == [(100, CHANGED)]


def test_the_candidates_are_asked_at_each_query():
    bases = []
    namespace = changes.ChangedSinceNamespace(lambda: bases)
    assert namespace.contexts("changed-since:new", False) == []
    bases.append(("id-9", "new"))
    assert [c.name for c in namespace.contexts("changed-since:new", False)] == [
        "evs:changed-since:new"
    ]
