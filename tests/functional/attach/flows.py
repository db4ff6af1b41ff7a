"""Attach, connect and detach as a compute host does, and the writer the barrier test uses."""

import os
import struct
import threading

from tests.functional.attach import hostenv

BLOCK = 4096


class Host:
    """A compute host: attaches a volume over a protocol and connects with os-brick."""

    def __init__(self, attach_host: dict, manager):
        self.brick = attach_host
        self.manager = manager

    def connector(self, protocol: str) -> dict:
        """os-brick's own connector properties of this host, naming ``protocol``."""
        return dict(self.brick["properties"], protocol=protocol)

    def attach(self, volume_id: str, protocol: str) -> tuple[dict, str]:
        """(connection info, device path): the attach and os-brick's connect."""
        info = self.manager.attach_volume(volume_id, self.connector(protocol))
        assert info["driver_volume_type"] == protocol
        if protocol == "local":
            return info, info["data"]["device_path"]
        device = self.brick[protocol].connect_volume(info["data"])
        return info, device["path"]

    def detach(self, volume_id: str, info: dict, device: str) -> None:
        """os-brick's disconnect, then the detach."""
        protocol = info["driver_volume_type"]
        if protocol != "local":
            self.brick[protocol].disconnect_volume(info["data"], {"path": device})
        self.manager.detach_volume(volume_id, self.connector(protocol))


def pattern(index: int, generation: int) -> bytes:
    """Block ``index``'s content in write ``generation``: recognisable and never all zeros."""
    return struct.pack(">QQ", index, generation) * (BLOCK // 16)


class SequentialWriter(threading.Thread):
    """Writes blocks 0, 1, 2... in order, one at a time (O_DIRECT), counting acknowledgements."""

    def __init__(self, device: str, blocks: int, generation: int):
        super().__init__(daemon=True)
        self.device = device
        self.blocks = blocks
        self.generation = generation
        self.acknowledged = 0
        self.stop = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        import mmap

        fd = os.open(self.device, os.O_WRONLY | os.O_DIRECT)
        buf = mmap.mmap(-1, BLOCK)
        try:
            for index in range(self.blocks):
                if self.stop.is_set():
                    return
                buf.seek(0)
                buf.write(pattern(index, self.generation))
                os.pwritev(fd, [buf], index * BLOCK)
                self.acknowledged = index + 1
        except BaseException as exc:
            self.error = exc
        finally:
            os.close(fd)


def new_prefix(image: str, blocks: int, generation: int) -> int:
    """How many leading blocks of ``image`` hold ``generation``; the rest must not."""
    with open(image, "rb") as f:
        data = f.read(blocks * BLOCK)
    prefix = 0
    while prefix < blocks and data[prefix * BLOCK : (prefix + 1) * BLOCK] == pattern(
        prefix, generation
    ):
        prefix += 1
    for index in range(prefix, blocks):
        block = data[index * BLOCK : (index + 1) * BLOCK]
        assert block != pattern(index, generation), (
            f"block {index} holds the new write but block {prefix} does not: not a prefix"
        )
    return prefix


def cmp(device: str, image: str, length: int) -> None:
    """The first ``length`` bytes of ``device`` and ``image`` are equal (``cmp``)."""
    result = hostenv.run("cmp", "-n", str(length), device, image, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
