"""Connectors for attaches asked for on this host (``evs volume attach``), as os-brick makes them.

A compute host's connector carries its iSCSI initiator name (``initiator``) and NVMe host
NQN (``nqn``); without ``--initiator`` the command attaches to this host's own, read
where open-iscsi and nvme-cli keep them.
"""

import socket

from evs_driver import exception

ISCSI_NAME_FILE = "/etc/iscsi/initiatorname.iscsi"
NVME_HOSTNQN_FILE = "/etc/nvme/hostnqn"


def _read_iqn() -> str | None:
    try:
        with open(ISCSI_NAME_FILE) as f:
            for line in f:
                key, sep, value = line.strip().partition("=")
                if sep and key == "InitiatorName" and value:
                    return value
    except OSError:
        pass
    return None


def _read_nqn() -> str | None:
    try:
        with open(NVME_HOSTNQN_FILE) as f:
            return f.read().strip() or None
    except OSError:
        return None


def host_name() -> str:
    """The name a connector gives for this host (os-brick's ``host``)."""
    return socket.gethostname()


def for_name(initiator: str) -> dict:
    """The connector keys an initiator name goes in: an NQN is ``nqn``, anything else IQN-like."""
    if initiator.startswith("nqn."):
        return {"nqn": initiator}
    if initiator.startswith(("iqn.", "eui.", "naa.")):
        return {"initiator": initiator}
    raise exception.InvalidInitiator(
        name=initiator[:256], kind="initiator name: an iSCSI IQN (iqn., eui., naa.) or an NVMe NQN"
    )


def this_host(protocol: str | None = None, initiator: str | None = None) -> dict:
    """This host's connector, or one for ``initiator``, asking for ``protocol`` when given."""
    connector: dict = {"host": host_name()}
    if initiator:
        connector.update(for_name(initiator))
    else:
        for key, name in (("initiator", _read_iqn()), ("nqn", _read_nqn())):
            if name:
                connector[key] = name
    if protocol:
        connector["protocol"] = protocol
    return connector
