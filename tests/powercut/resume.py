"""Inside the guest: become a saved, booted machine that each power-cut round resumes.

A cold boot under TCG spends most of a minute in the kernel and Python's imports. The
host saves the guest once, booted, with everything imported, but before the power-cut
disk is ever mounted, and starts every round from that image: what the disk holds is what
the last cut left, and the guest has nothing of it in memory (its block cache is dropped
at resume), so the disk is seen as by a machine booting after a power cut.

Three things a saved image would repeat in every round are made fresh at resume: the 9p
shares (QEMU refuses to save while they are mounted), the clock, and the kernel's random
generator (ids are random: two rounds must never draw the same ones).
"""

import fcntl
import os
import subprocess
import sys
import time

READY = "powercut: saved image ready"  # the host saves the guest once it prints this
RNDRESEEDCRNG = 0x5207  # <linux/random.h>: reseed the generator from the input pool
BLKFLSBUF = 0x1261  # <linux/fs.h>: write back and drop a block device's cached pages


def _shares() -> list[tuple[str, str, str]]:
    """The mounted 9p shares: (tag, mount point, options)."""
    with open("/proc/mounts") as f:
        rows = [line.split() for line in f]
    return [(tag, point, options) for tag, point, kind, options, *_ in rows if kind == "9p"]


def _busybox(*args: str) -> None:
    subprocess.run(["/bin/busybox", *args], check=True)


def wait_for_round(disk: str) -> list[str]:
    """Unmount the shares, announce the image is ready, and wait for a round's orders.

    Returns the round's arguments (typed on the console by the host after it resumed
    this image); on return the shares, clock and random generator are fresh.
    """
    shares = _shares()
    os.chdir("/")
    for _, point, _ in reversed(shares):
        _busybox("umount", point)
    print(READY, flush=True)
    words: list[str] = []
    while words[:1] != ["round"]:  # the console may drop what comes before a resume settles
        line = sys.stdin.readline()
        if not line:
            raise RuntimeError("the console closed before the host sent a round's orders")
        words = line.split()
    clock, entropy, arguments = float(words[1]), bytes.fromhex(words[2]), words[3:]
    time.clock_settime(time.CLOCK_REALTIME, clock)
    with open("/dev/urandom", "wb", buffering=0) as rng:
        rng.write(entropy)
        fcntl.ioctl(rng, RNDRESEEDCRNG)
    with open(disk, "rb") as device:
        fcntl.ioctl(device, BLKFLSBUF)  # partition probing cached the disk as it was then
    with open("/proc/sys/vm/drop_caches", "w") as caches:
        caches.write("3")
    for tag, point, options in shares:
        _busybox("mount", "-t", "9p", "-o", options, tag, point)
    os.chdir("/mnt/repo")
    return arguments


def round_orders(clock: float, entropy: bytes, arguments: list[str]) -> bytes:
    """The console line that starts a resumed round (the host's side of the above)."""
    line = " ".join(["round", repr(clock), entropy.hex(), *arguments])
    return b"\n" + line.encode() + b"\n"  # a lost first byte costs an empty line, no more
