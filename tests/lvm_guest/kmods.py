"""Pick kernel modules and their dependencies from an unpacked kernel package.

The package has no ``modules.dep`` (its postinst runs depmod), so read each module's
``depends=`` from its ELF ``.modinfo`` section and order them so dependencies load first.
"""

import os
import struct


def modinfo(path: str) -> dict[str, str]:
    """Return the ``key=value`` strings of a module's ``.modinfo`` section (last one wins)."""
    with open(path, "rb") as f:
        elf = f.read()
    if elf[:4] != b"\x7fELF" or elf[4] != 2:
        raise ValueError(f"{path}: not a 64-bit ELF module")
    (shoff,) = struct.unpack_from("<Q", elf, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", elf, 0x3A)

    def section(index: int) -> tuple[int, int, int]:
        base = shoff + index * shentsize
        (name,) = struct.unpack_from("<I", elf, base)
        offset, size = struct.unpack_from("<QQ", elf, base + 0x18)
        return name, offset, size

    _, names_off, _ = section(shstrndx)
    for index in range(shnum):
        name_idx, offset, size = section(index)
        end = elf.index(b"\0", names_off + name_idx)
        if elf[names_off + name_idx : end] == b".modinfo":
            info = {}
            for item in elf[offset : offset + size].split(b"\0"):
                key, sep, value = item.decode(errors="replace").partition("=")
                if sep:
                    info[key] = value
            return info
    return {}


def module_index(modules_dir: str) -> dict[str, str]:
    """Map each module name (dashes as underscores) to its ``.ko`` path."""
    index = {}
    for dirpath, _, filenames in os.walk(modules_dir):
        for name in filenames:
            if name.endswith(".ko"):
                index[name[:-3].replace("-", "_")] = os.path.join(dirpath, name)
    return index


def load_order(modules_dir: str, wanted: list[str]) -> list[str]:
    """Return the ``.ko`` paths of ``wanted`` and their dependencies, dependencies first."""
    index = module_index(modules_dir)
    order: list[str] = []
    seen: set[str] = set()

    def visit(name: str) -> None:
        name = name.replace("-", "_")
        if name in seen:
            return
        seen.add(name)
        if name not in index:
            raise KeyError(f"kernel module {name} not found under {modules_dir}")
        deps = modinfo(index[name]).get("depends", "")
        for dep in filter(None, deps.split(",")):
            visit(dep)
        order.append(index[name])

    for name in wanted:
        visit(name)
    return order
