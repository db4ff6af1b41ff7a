"""ExportRegistry: names, aliases, and the connections attached to each export."""

import pytest

from evs_driver import exception
from evs_driver.nbd import ExportRegistry


def opener():
    raise AssertionError("the registry never opens devices")


class Conn:
    def close(self):
        pass


def test_lookup_by_name_and_alias():
    registry = ExportRegistry()
    export = registry.add("vol", opener, aliases=["id-1", "id-1", "vol"], description="d")
    assert registry.lookup("vol") is export
    assert registry.lookup("id-1") is export
    assert registry.lookup("nope") is None
    assert export.keys == ("vol", "id-1")
    assert (export.read_only, export.description) == (False, "d")


def test_empty_name_is_the_default_export():
    registry = ExportRegistry()
    export = registry.add("vol", opener, aliases=[""])
    assert registry.lookup("") is export


@pytest.mark.parametrize(
    "name,aliases",
    [("vol", []), ("other", ["vol"]), ("other", ["id-1"]), ("id-1", [])],
)
def test_taken_names_are_refused_and_nothing_changes(name, aliases):
    registry = ExportRegistry()
    first = registry.add("vol", opener, aliases=["id-1"])
    with pytest.raises(exception.AlreadyExists):
        registry.add(name, opener, aliases=aliases)
    assert registry.exports() == [first]
    assert registry.lookup("other") is None


@pytest.mark.parametrize("name", ["a\0b", "x" * 4097, "é" * 2049, "\udcff", None, 7])
def test_invalid_names_are_refused(name):
    registry = ExportRegistry()
    with pytest.raises(exception.InvalidInput):
        registry.add(name, opener)
    with pytest.raises(exception.InvalidInput):
        registry.add("ok", opener, aliases=[name])
    assert registry.exports() == []


def test_longest_valid_name():
    registry = ExportRegistry()
    registry.add("x" * 4096, opener)
    assert registry.lookup("x" * 4096) is not None


def test_remove_by_alias_frees_every_name_and_returns_connections():
    registry = ExportRegistry()
    export = registry.add("vol", opener, aliases=["id-1"])
    a, b = Conn(), Conn()
    registry.attach(export, a)
    registry.attach(export, b)
    registry.detach(export, b)
    assert registry.connection_count("id-1") == 1
    removed, connections = registry.remove("id-1")
    assert (removed, connections) == (export, [a])
    assert registry.lookup("vol") is None and registry.lookup("id-1") is None
    assert registry.connection_count("vol") == 0
    registry.add("id-1", opener)  # the alias is free for reuse


def test_attach_to_a_removed_export_fails():
    registry = ExportRegistry()
    export = registry.add("vol", opener)
    registry.remove("vol")
    with pytest.raises(exception.NotFound):
        registry.attach(export, Conn())
    registry.detach(export, Conn())  # no error


def test_attach_over_the_per_export_cap_is_refused_until_one_leaves():
    registry = ExportRegistry(max_connections_per_export=2)
    export = registry.add("vol", opener, aliases=["id-1"])
    other = registry.add("other", opener)
    a, b = Conn(), Conn()
    registry.attach(export, a)
    registry.attach(export, b)
    with pytest.raises(exception.NBDExportFull, match="vol already has its maximum of 2"):
        registry.attach(export, Conn())
    registry.attach(other, Conn())  # the cap is per export
    registry.detach(export, a)
    registry.attach(export, Conn())
    assert registry.connection_count("id-1") == 2


def test_a_new_export_under_an_old_name_is_a_different_export():
    registry = ExportRegistry()
    old = registry.add("vol", opener)
    registry.remove("vol")
    registry.add("vol", opener)
    with pytest.raises(exception.NotFound):
        registry.attach(old, Conn())


def test_remove_unknown_is_not_found():
    with pytest.raises(exception.NotFound):
        ExportRegistry().remove("nope")


def test_exports_sorted_by_name():
    registry = ExportRegistry()
    registry.add("b", opener)
    registry.add("a", opener)
    assert [e.name for e in registry.exports()] == ["a", "b"]
