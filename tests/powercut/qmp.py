"""The host's side of saving the booted power-cut guest: a minimal QMP client."""

import json
import socket
import time

SAVE_TIMEOUT = 300  # seconds: bounds a save that never completes


class Monitor:
    """One QMP connection to a running QEMU (``-qmp unix:PATH,server=on,wait=off``)."""

    def __init__(self, path: str):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.stream = self.sock.makefile("rwb")
        self._read()  # the greeting
        self.execute("qmp_capabilities")

    def _read(self) -> dict:
        while True:
            line = self.stream.readline()
            if not line:
                raise RuntimeError("QEMU closed its QMP socket")
            message = json.loads(line)
            if "event" not in message:  # events are not answers
                return message

    def execute(self, command: str, **arguments) -> object:
        """Run one command; return its answer or raise with QEMU's error."""
        request = {"execute": command} | ({"arguments": arguments} if arguments else {})
        self.stream.write(json.dumps(request).encode() + b"\n")
        self.stream.flush()
        answer = self._read()
        if "error" in answer:
            raise RuntimeError(f"QMP {command}: {answer['error'].get('desc', answer['error'])}")
        return answer.get("return")

    def save(self, path: str) -> None:
        """Write the guest's whole state (memory and devices) to ``path``, then quit QEMU."""
        self.execute("migrate-set-parameters", **{"max-bandwidth": 8 << 30})
        self.execute("migrate", uri=f"exec:cat > {path}")
        deadline = time.monotonic() + SAVE_TIMEOUT
        while True:
            status = self.execute("query-migrate").get("status")
            if status == "completed":
                break
            if status in ("failed", "cancelled") or time.monotonic() > deadline:
                raise RuntimeError(f"saving the guest to {path} ended {status}")
            time.sleep(0.1)
        self.execute("quit")
        self.sock.close()
