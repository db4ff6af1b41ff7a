"""Images of any qemu-img format in and out, embedded and through the service."""

import os

import pytest

from tests.functional.cli.support import evs, evs_on_terminal, one_line_error
from tests.functional.nbd.nbd_clients import requires, run
from tests.functional.service.support import MiB, ok

pytestmark = requires("qemu-img", "qemu-io")


def _qcow2(path: str, size: str = "32M") -> str:
    run("qemu-img", "create", "-f", "qcow2", path, size)
    run(
        "qemu-io", "-f", "qcow2", "-c", "write -P 0x42 1M 192k", "-c", "write -P 0x43 20M 64k", path
    )
    return path


@pytest.mark.parametrize("with_service", [False, True], ids=["embedded", "service"])
def test_qcow2_import_overwrites_everything_and_exports_in_any_format(request, state, with_service):
    if with_service:
        request.getfixturevalue("service")
    image = _qcow2(os.path.join(state, "in.qcow2"))
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    junk = os.path.join(state, "junk.raw")
    with open(junk, "wb") as f:
        f.write(b"\x77" * (40 * MiB))  # old data past the image's end must read as zeros
    ok(state, "volume", "import", "v", junk)
    result = ok(state, "volume", "import", "v", image)
    assert (result["format"], result["virtual_size"]) == ("qcow2", 32 * MiB)
    assert ok(state, "volume", "show", "v")["mapped_bytes"] == 256 * 1024  # thin: data only
    for fmt in ("qcow2", "vmdk", "raw"):
        out = os.path.join(state, f"out.{fmt}")
        ok(state, "volume", "export", "v", out, "-O", fmt)
        run("qemu-img", "compare", "-f", "qcow2", "-F", fmt, image, out)
        assert not os.path.exists(out + ".partial")
    ok(state, "snapshot", "create", "v", "--name", "s")
    ok(state, "snapshot", "export", "s", os.path.join(state, "s.qcow2"), "-O", "qcow2")
    run("qemu-img", "compare", image, os.path.join(state, "s.qcow2"))
    assert ok(state, "volume", "show", "v")["status"] == "available"
    assert ok(state, "export", "list") == []


@pytest.mark.parametrize("with_service", [False, True], ids=["embedded", "service"])
def test_bad_images_fail_clearly_and_change_nothing(request, state, with_service):
    if with_service:
        request.getfixturevalue("service")
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    big = os.path.join(state, "big.qcow2")
    run("qemu-img", "create", "-f", "qcow2", big, "2G")
    assert "extend the volume" in one_line_error(evs(state, "volume", "import", "v", big))
    backed = os.path.join(state, "backed.qcow2")
    run("qemu-img", "create", "-f", "qcow2", "-b", big, "-F", "qcow2", backed)
    assert "backing file" in one_line_error(evs(state, "volume", "import", "v", backed))
    broken = os.path.join(state, "broken.qcow2")
    with open(big, "rb") as f, open(broken, "wb") as g:
        g.write(f.read(512))  # a qcow2 header and nothing behind it
    assert "evs: error:" in one_line_error(evs(state, "volume", "import", "v", broken))
    line = one_line_error(
        evs(state, "volume", "export", "v", os.path.join(state, "x"), "-O", "nope")
    )
    assert "nope" in line and not os.path.exists(os.path.join(state, "x"))
    shown = ok(state, "volume", "show", "v")
    assert (shown["status"], shown["mapped_bytes"]) == ("available", 0)
    assert ok(state, "export", "list") == []


def test_import_through_the_service_draws_qemu_img_progress_on_a_terminal(service, state):
    image = _qcow2(os.path.join(state, "in.qcow2"))
    ok(state, "volume", "create", "--size", "1", "--name", "v")
    proc, drawn = evs_on_terminal(state, "volume", "import", "v", image)
    assert proc.returncode == 0
    assert b"100.00/100%" in drawn
