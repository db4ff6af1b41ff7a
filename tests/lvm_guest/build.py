"""Assemble the LVM test guest (kernel + initramfs) from Debian packages, installing nothing.

apt resolves the packages' closure against an empty dpkg status file and only downloads
it; the .debs are unpacked into a tree, trimmed to what the tests need, and packed
with a small ``/init`` as an uncompressed initramfs. The result is cached under a key
made of the inputs, so only a change to them rebuilds.
"""

import glob
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

import cpio
import kmods
import vmlinux

HERE = os.path.dirname(os.path.abspath(__file__))
PACKAGES = (
    "linux-image-amd64",
    "lvm2",
    "thin-provisioning-tools",
    "python3",
    "busybox-static",
    # attach: initiators, LIO's Python library, udev for /dev/disk/by-id, fio to verify data
    "open-iscsi",
    "nvme-cli",
    "python3-rtslib-fb",
    "udev",
    "fio",
    # powercut: the pool lives on ext4 over a virtio disk
    "e2fsprogs",
    # os-brick runs these (Debian's "essential" set, which apt does not pull in by itself)
    "coreutils",
    "diffutils",
    "libc-bin",  # ldconfig: ctypes.util.find_library (pyudev from PyPI) asks it
    "grep",
    "sed",
    "util-linux",
    "procps",
)
MODULES = (
    "virtio_pci",
    "virtio_blk",
    "9p",
    "9pnet_virtio",
    "crc32c_generic",  # libcrc32c asks the crypto API for crc32c; nothing would modprobe it
    "dm_thin_pool",
    "dm_snapshot",  # lvcreate -s checks for the snapshot target even for thin snapshots
    "loop",
    "ext4",  # powercut
    # attach: kernel NBD client, LIO iSCSI target and initiator, nvmet NVMe/TCP target and host
    "nbd",
    "configfs",
    "target_core_mod",
    "target_core_iblock",
    "target_core_file",
    "iscsi_target_mod",
    "iscsi_tcp",
    "sd_mod",
    "nvme_tcp",
    "nvmet",
    "nvmet_tcp",
)
# Unpacked paths the guest never uses; dropping them keeps the initramfs small and boot fast.
PRUNE = (
    "boot",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
    "usr/share/bash-completion",
    "usr/lib/udev/hwdb.bin",
    "usr/lib/udev/hwdb.d",
    "usr/lib/python3.11/ensurepip",
    "usr/lib/python3.11/idlelib",
    "usr/lib/python3.11/lib2to3",
    "usr/lib/python3.11/pydoc_data",
    "usr/lib/python3.11/tkinter",
    "usr/lib/python3.11/turtledemo",
)
# Debian bookworm merges / into /usr: the packages still ship /bin, /lib, ... paths.
USRMERGE = ("bin", "sbin", "lib", "lib64")


class Guest:
    """Paths of a built guest."""

    def __init__(self, cache_dir: str):
        self.cache_dir = cache_dir
        self.kernel = os.path.join(cache_dir, "vmlinux")
        self.initrd = os.path.join(cache_dir, "initramfs.cpio")
        self.stamp = os.path.join(cache_dir, "stamp.json")


def _log(msg: str) -> None:
    print(f"lvm-guest: {msg}", file=sys.stderr, flush=True)


def build_key() -> str:
    """Hash of everything that shapes the guest image."""
    digest = hashlib.sha256(repr((PACKAGES, MODULES, PRUNE, USRMERGE)).encode())
    for name in ("build.py", "cpio.py", "kmods.py", "vmlinux.py", "files/init", "files/lvm.conf"):
        with open(os.path.join(HERE, name), "rb") as f:
            digest.update(f.read())
    return digest.hexdigest()[:16]


def _apt_download(debs: str) -> None:
    state = os.path.join(debs, "state")
    os.makedirs(os.path.join(debs, "partial"), exist_ok=True)
    os.makedirs(state, exist_ok=True)
    status = os.path.join(state, "status")
    open(status, "w").close()
    cmd = [
        "apt-get",
        "install",
        "-q",
        "-y",
        "--download-only",
        "--no-install-recommends",
        f"-o=Dir::State::status={status}",
        f"-o=Dir::Cache::archives={debs}",
        "-o=Debug::NoLocking=1",
        *PACKAGES,
    ]
    if subprocess.run(cmd, stdout=subprocess.DEVNULL).returncode != 0:
        # A fresh machine may have no package lists yet.
        _log("apt-get failed; running apt-get update and trying again")
        subprocess.run(["apt-get", "update", "-q"], check=True, stdout=subprocess.DEVNULL)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _unpack(debs: str, tree: str) -> None:
    os.makedirs(os.path.join(tree, "usr"))
    for name in USRMERGE:
        os.makedirs(os.path.join(tree, "usr", name))
        os.symlink(f"usr/{name}", os.path.join(tree, name))
    for deb in sorted(glob.glob(os.path.join(debs, "*.deb"))):
        extract = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", deb], stdout=subprocess.PIPE)
        subprocess.run(
            ["tar", "-x", "--keep-directory-symlink", "-C", tree], stdin=extract.stdout, check=True
        )
        extract.stdout.close()
        if extract.wait() != 0:
            raise RuntimeError(f"dpkg-deb failed on {deb}")


def _keep_modules(tree: str) -> None:
    (modules_root,) = glob.glob(os.path.join(tree, "usr/lib/modules/*"))
    order = kmods.load_order(modules_root, list(MODULES))
    target = os.path.join(tree, "usr/lib/modules/evs")
    os.makedirs(target)
    names = []
    for path in order:
        name = os.path.basename(path)
        shutil.copy2(path, os.path.join(target, name))
        names.append(name)
    shutil.rmtree(modules_root)
    os.makedirs(os.path.join(tree, "etc/evs-guest"), exist_ok=True)
    with open(os.path.join(tree, "etc/evs-guest/modules"), "w") as f:
        f.write("\n".join(names) + "\n")


def _configure(tree: str) -> None:
    for path in PRUNE:
        full = os.path.join(tree, path)
        if os.path.isdir(full) and not os.path.islink(full):
            shutil.rmtree(full)
        elif os.path.lexists(full):
            os.unlink(full)
    for path in ("proc", "sys", "dev", "run", "tmp", "root", "mnt/repo", "mnt/run"):
        os.makedirs(os.path.join(tree, path), exist_ok=True)
    # No maintainer script runs: make the dynamic linker's cache (ldconfig -p reads it) ...
    conf = os.path.join(tree, "etc/ld.so.conf")
    if not os.path.exists(conf):
        with open(conf, "w") as f:
            f.write("include /etc/ld.so.conf.d/*.conf\n")
    subprocess.run(["ldconfig", "-r", tree], check=True)
    # ... and a root account (iscsid refuses a client whose uid has no name).
    for name, line in (("passwd", "root:x:0:0:root:/root:/bin/sh"), ("group", "root:x:0:")):
        with open(os.path.join(tree, "etc", name), "w") as f:
            f.write(line + "\n")
    shutil.copy(os.path.join(HERE, "files/init"), os.path.join(tree, "init"))
    os.chmod(os.path.join(tree, "init"), 0o755)
    # LVM reads lvmlocal.conf after lvm.conf, so its settings win.
    shutil.copy(os.path.join(HERE, "files/lvm.conf"), os.path.join(tree, "etc/lvm/lvmlocal.conf"))


def _pack(tree: str, initrd: str) -> None:
    tmp = initrd + ".tmp"
    with open(tmp, "wb") as out:
        writer = cpio.CpioWriter(out)
        writer.add_tree(tree)
        writer.add_chardev("dev/console", 5, 1)  # init's stdio before devtmpfs is mounted
        writer.add_chardev("dev/null", 1, 3, 0o666)
        writer.close()
    os.replace(tmp, initrd)


def _kernel(tree: str, kernel: str) -> None:
    (bzimage,) = glob.glob(os.path.join(tree, "boot/vmlinuz-*"))
    with open(bzimage, "rb") as f:
        image = vmlinux.extract_vmlinux(f.read())
    with open(kernel + ".tmp", "wb") as f:
        f.write(image)
    os.replace(kernel + ".tmp", kernel)


def ensure_guest(cache_dir: str, rebuild: bool = False) -> Guest:
    """Return the cached guest, building it first when missing or out of date."""
    guest = Guest(cache_dir)
    key = build_key()
    if not rebuild and os.path.exists(guest.stamp):
        with open(guest.stamp) as f:
            if json.load(f).get("key") == key:
                return guest
    started = time.monotonic()
    debs = os.path.join(cache_dir, "debs")
    tree = os.path.join(cache_dir, "rootfs")
    os.makedirs(cache_dir, exist_ok=True)
    if os.path.exists(tree):
        shutil.rmtree(tree)
    _log("downloading packages")
    _apt_download(debs)
    _log("unpacking")
    _unpack(debs, tree)
    _kernel(tree, guest.kernel)
    _keep_modules(tree)
    _configure(tree)
    _log("packing initramfs")
    _pack(tree, guest.initrd)
    shutil.rmtree(tree)
    with open(guest.stamp, "w") as f:
        json.dump({"key": key, "built_in_s": round(time.monotonic() - started, 1)}, f)
    _log(f"guest built in {time.monotonic() - started:.1f}s")
    return guest
