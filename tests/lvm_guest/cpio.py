"""Write an uncompressed ``newc`` cpio archive, the format the kernel unpacks as an initramfs."""

import os
import stat
from typing import BinaryIO

_MAGIC = b"070701"
_TRAILER = "TRAILER!!!"


def _pad(length: int) -> bytes:
    return b"\0" * (-length % 4)


class CpioWriter:
    """Append files, directories, symlinks and device nodes to a newc archive."""

    def __init__(self, out: BinaryIO):
        self._out = out
        self._ino = 1

    def _entry(self, name: str, mode: int, data: bytes = b"", rdev: tuple[int, int] = (0, 0)):
        encoded = name.encode() + b"\0"
        fields = [
            self._ino,
            mode,
            0,  # uid: everything in the guest belongs to root
            0,  # gid
            1,  # nlink: hard links are stored as separate files
            0,  # mtime: fixed, so rebuilding gives the same bytes
            len(data),
            0,
            0,
            rdev[0],
            rdev[1],
            len(encoded),
            0,
        ]
        self._ino += 1
        header = _MAGIC + b"".join(b"%08x" % f for f in fields)
        self._out.write(header + encoded + _pad(len(header) + len(encoded)))
        self._out.write(data + _pad(len(data)))

    def add_dir(self, name: str, perm: int = 0o755) -> None:
        """Add a directory."""
        self._entry(name, stat.S_IFDIR | perm)

    def add_file(self, name: str, data: bytes, perm: int = 0o644) -> None:
        """Add a regular file holding ``data``."""
        self._entry(name, stat.S_IFREG | perm, data)

    def add_symlink(self, name: str, target: str) -> None:
        """Add a symbolic link to ``target``."""
        self._entry(name, stat.S_IFLNK | 0o777, target.encode())

    def add_chardev(self, name: str, major: int, minor: int, perm: int = 0o600) -> None:
        """Add a character device node (the kernel creates it while unpacking)."""
        self._entry(name, stat.S_IFCHR | perm, rdev=(major, minor))

    def add_tree(self, root: str) -> None:
        """Add every directory, file and symlink under ``root``, relative to it, sorted."""
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            rel_dir = os.path.relpath(dirpath, root)
            for name in sorted(dirnames + filenames):
                path = os.path.join(dirpath, name)
                rel = os.path.normpath(os.path.join(rel_dir, name))
                st = os.lstat(path)
                perm = stat.S_IMODE(st.st_mode)
                if stat.S_ISLNK(st.st_mode):
                    self.add_symlink(rel, os.readlink(path))
                elif stat.S_ISDIR(st.st_mode):
                    self.add_dir(rel, perm)
                elif stat.S_ISREG(st.st_mode):
                    with open(path, "rb") as f:
                        self.add_file(rel, f.read(), perm)

    def close(self) -> None:
        """Write the trailer that ends the archive."""
        self._entry(_TRAILER, 0)
