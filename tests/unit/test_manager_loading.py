"""Loading drivers per enabled backend, attachments, and data import/export rules."""

import pytest

from evs_driver import exception
from evs_driver.driver import EVSDriver
from tests.unit.test_manager_rules import new_manager


@pytest.mark.parametrize("driver", ["evs", "evs_driver.driver.EVSDriver"])
def test_driver_by_entry_point_or_class_path(tmp_path, driver):
    m = new_manager(tmp_path, f"[DEFAULT]\nenabled_backends = a\n[a]\nvolume_driver = {driver}\n")
    try:
        assert isinstance(m.drivers["a"], EVSDriver)
        assert m.create_volume(1).backend == "a"
    finally:
        m.close()


@pytest.mark.parametrize(
    "driver, text",
    [("nope", "neither an entry point"), ("no.such.Driver", "nor an importable class")],
)
def test_unknown_driver_is_a_config_error(tmp_path, driver, text):
    conf = f"[DEFAULT]\nenabled_backends = a\n[a]\nvolume_driver = {driver}\n"
    with pytest.raises(exception.ConfigError, match=rf"\[a\] volume_driver .*{text}"):
        new_manager(tmp_path, conf)


def test_two_backends_each_with_own_pool(tmp_path):
    m = new_manager(tmp_path, "[DEFAULT]\nenabled_backends = a,b\n")
    try:
        va = m.create_volume(1, backend="a")
        vb = m.create_volume(1, backend="b")
        snap = m.create_snapshot(vb.id)
        clone = m.create_volume(snapshot=snap.id)
        assert (va.backend, vb.backend, snap.backend, clone.backend) == ("a", "b", "b", "b")
        stats = m.pool_stats()
        assert stats["a"]["total_volumes"] == 1 and stats["b"]["total_volumes"] == 2
        assert m.check() == {"a": [], "b": []}
        with pytest.raises(exception.InvalidInput, match="no enabled backend"):
            m.create_volume(1, backend="c")
    finally:
        m.close()


def test_attach_without_service_leaves_volume_available(tmp_path):
    m = new_manager(tmp_path)
    try:
        m.create_volume(1, name="v")
        with pytest.raises(exception.AttachNeedsService):
            m.attach_volume("v", {"host": "h"})
        assert m.get_volume("v").status == "available"
        assert m.detach_volume("v", {"host": "h"}).status == "available"  # nothing to detach
    finally:
        m.close()


def test_in_use_volume_refuses_import_and_export(tmp_path):
    image = tmp_path / "img.raw"
    image.write_bytes(b"x" * 100)
    m = new_manager(tmp_path)
    try:
        m.create_volume(1, name="v")
        m.reset_status("volume", "v", "in-use")
        with pytest.raises(exception.InvalidStatus, match="importing"):
            m.import_volume("v", str(image))
        with pytest.raises(exception.InvalidStatus, match="exporting"):
            m.export("volume", "v", str(tmp_path / "out.raw"))
        assert not (tmp_path / "out.raw").exists()
        m.create_snapshot("v", name="s")  # a snapshot of it exports fine
        m.export("snapshot", "s", str(tmp_path / "out.raw"))
        assert (tmp_path / "out.raw").stat().st_size == 1024**3
    finally:
        m.close()
