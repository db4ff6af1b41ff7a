"""References, names and sizes as an operator types them (EVS rule 9; issue: no silent no-ops).

Real ``evs`` processes on a real state directory: a delete either deletes what the reference
names or fails; names that could be taken for ids, or that would drive the terminal, are
refused; sizes are plain decimal integers.
"""

import subprocess
import time
import unittest
import uuid

import ddt
import pytest

from tests.functional.cli.support import (
    TIMEOUT,
    env_for,
    evs,
    evs_cmd,
    evs_json,
    manager,
    one_line_error,
    snapshot_state,
)

# A name that is 36 characters with four dashes, but no UUID: once taken for a missing id.
ID_SHAPED_NAME = "database-volume-2026-production-data"


@ddt.ddt
class TestDeleteByReference(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _state(self, tmp_path):
        self.state = tmp_path / "state"

    def test_volume_named_like_an_id_is_deleted_by_its_name(self):
        evs_json(self.state, "volume", "create", "--size", "1", "--name", ID_SHAPED_NAME)
        result = evs(self.state, "volume", "delete", ID_SHAPED_NAME)
        assert result.returncode == 0, result.stderr
        assert evs_json(self.state, "volume", "list") == []

    def test_snapshot_named_like_an_id_is_deleted_by_its_name(self):
        evs_json(self.state, "volume", "create", "--size", "1", "--name", "v")
        evs_json(self.state, "snapshot", "create", "v", "--name", ID_SHAPED_NAME)
        result = evs(self.state, "snapshot", "delete", ID_SHAPED_NAME)
        assert result.returncode == 0, result.stderr
        assert evs_json(self.state, "snapshot", "list") == []

    @ddt.data("volume", "snapshot")
    def test_an_id_that_matches_nothing_is_already_gone(self, kind):
        evs_json(self.state, "volume", "create", "--size", "1", "--name", "v")
        result = evs(self.state, kind, "delete", str(uuid.uuid4()))
        assert result.returncode == 0, result.stderr

    @ddt.data("volume", "snapshot")
    def test_a_name_that_matches_nothing_is_an_error(self, kind):
        evs_json(self.state, "volume", "create", "--size", "1", "--name", "v")
        before = snapshot_state(self.state)
        line = one_line_error(evs(self.state, kind, "delete", ID_SHAPED_NAME))
        assert "not found" in line, line
        assert snapshot_state(self.state) == before

    @ddt.data(
        str(uuid.uuid4()),
        str(uuid.uuid4()).upper(),
        uuid.uuid4().hex,
        "{" + str(uuid.uuid4()) + "}",
        "urn:uuid:" + str(uuid.uuid4()),
    )
    def test_names_that_look_like_ids_are_refused(self, name):
        evs_json(self.state, "volume", "create", "--size", "1", "--name", "v")
        before = snapshot_state(self.state)
        for command in (
            ("volume", "create", "--size", "1", "--name", name),
            ("snapshot", "create", "v", "--name", name),
        ):
            line = one_line_error(evs(self.state, *command))
            assert "looks like an id" in line, line
        assert snapshot_state(self.state) == before


@ddt.ddt
class TestPrintableText(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _state(self, tmp_path):
        self.state = tmp_path / "state"
        evs_json(self.state, "volume", "create", "--size", "1", "--name", "v")

    @ddt.data(
        "two\nlines",
        "bell\x07",
        "clear\x1b[2J",
        "title\x1b]0;owned\x07",
        "delete\x7f",
        "csi\x9b31m",
        "rtl\u202eexe.txt",
    )
    def test_control_characters_in_names_are_refused(self, name):
        before = snapshot_state(self.state)
        for command in (
            ("volume", "create", "--size", "1", "--name", name),
            ("snapshot", "create", "v", "--name", name),
        ):
            line = one_line_error(evs(self.state, *command))
            assert "control character" in line, line
        assert snapshot_state(self.state) == before

    @ddt.data("\x1b[2J", "\x07", "\u202e")
    def test_control_characters_in_descriptions_are_refused(self, text):
        line = one_line_error(
            evs(self.state, "volume", "create", "--size", "1", "--description", "a" + text)
        )
        assert "control character" in line, line

    def test_a_description_may_span_lines_and_is_escaped_in_tables(self):
        result = evs(self.state, "volume", "create", "--size", "1", "--description", "a\nb\tc")
        assert result.returncode == 0, result.stderr
        assert "a\\nb\\tc" in result.stdout
        assert "\t" not in result.stdout
        shown = evs_json(self.state, "volume", "list")[-1]
        assert shown["description"] == "a\nb\tc"  # JSON keeps the value itself

    def test_old_catalog_rows_with_escapes_print_escaped(self):
        """A name stored before these checks (here written straight into the catalog) must
        not reach the terminal raw."""
        m = manager(self.state)
        try:
            volume = m.get_volume("v")
            with m.catalog.transaction() as txn:
                txn.set_fields(volume, display_name="v\x1b[2J")
        finally:
            m.close()
        listing = evs(self.state, "volume", "list")
        assert listing.returncode == 0, listing.stderr
        assert "\x1b" not in listing.stdout
        assert "v\\x1b[2J" in listing.stdout


@ddt.ddt
class TestSizes(unittest.TestCase):
    @pytest.fixture(autouse=True)
    def _state(self, tmp_path):
        self.state = tmp_path / "state"
        evs_json(self.state, "volume", "create", "--size", "1", "--name", "v")

    @ddt.data("1_000", "+1", " 1", "1 ", "0x10", "1e3", "١", "²")
    def test_sizes_are_plain_decimal_integers(self, size):
        before = snapshot_state(self.state)
        for command in (
            ("volume", "create", "--size", size),
            ("volume", "extend", "v", "--size", size),
        ):
            line = one_line_error(evs(self.state, *command), code=2)
            assert "whole number of GiB" in line, line
        assert snapshot_state(self.state) == before

    @ddt.data("1_0", "+80", "٨٠")
    def test_ports_are_plain_decimal_integers(self, port):
        line = one_line_error(evs(self.state, "volume", "serve", "v", "--port", port), code=2)
        assert "TCP port" in line, line


def test_create_from_a_snapshot_deleted_while_it_waited_leaves_nothing(tmp_path):
    """The create has read the snapshot as available; a delete then runs to completion
    before the create takes the backend lock. The create must re-read its source there and
    fail in one line, leaving no volume behind (before the fix: an ``error`` volume
    pointing at the deleted snapshot)."""
    state = tmp_path / "state"
    evs_json(state, "volume", "create", "--size", "1", "--name", "v")
    evs_json(state, "snapshot", "create", "v", "--name", "s")
    release = tmp_path / "release"
    env = env_for(state, EVS_FAULT_INJECT=f"create_volume.source_read=wait:{release}")
    proc = subprocess.Popen(
        evs_cmd("volume", "create", "--snapshot", "s", "--name", "late"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reached = tmp_path / "release.reached"
        deadline = time.monotonic() + TIMEOUT
        while not reached.exists():
            assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
            time.sleep(0.02)
        deleted = evs(state, "snapshot", "delete", "s")
        assert deleted.returncode == 0, deleted.stderr
    finally:
        release.touch()
        out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1, (out, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "deleted meanwhile" in lines[0], err
    assert [v["name"] for v in evs_json(state, "volume", "list")] == ["v"]
    assert evs(state, "pool", "check").returncode == 0
