"""Initiator and target names: IQN and NQN checks, target names, per-volume CHAP secrets."""

import re
import secrets
import string

from evs_driver import exception

# RFC 3720 3.2.6.3.1: iqn.yyyy-mm.reversed.domain[:anything]; eui. and naa. forms too.
_IQN = re.compile(r"^iqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9.-]*[a-z0-9])?(:[^\s]+)?$")
_EUI = re.compile(r"^eui\.[0-9A-Fa-f]{16}$")
_NAA = re.compile(r"^naa\.([0-9A-Fa-f]{16}|[0-9A-Fa-f]{32})$")
# NVMe base spec 4.5: nqn.yyyy-mm.reversed.domain:anything, or the UUID form; 223 bytes.
_NQN = re.compile(r"^nqn\.\d{4}-(0[1-9]|1[0-2])\.[a-z0-9]([a-z0-9.-]*[a-z0-9])?:[^\s/]+$")
_NQN_UUID = re.compile(
    r"^nqn\.2014-08\.org\.nvmexpress:uuid:[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$"
)
_UUID_PREFIX = "nqn.2014-08.org.nvmexpress:uuid:"
MAX_IQN = 223
MAX_NQN = 223
CHAP_USERNAME_LENGTH = 20  # Cinder's volume_utils.generate_username
CHAP_PASSWORD_LENGTH = 16  # Cinder's volume_utils.generate_password
_CHAP_ALPHABET = string.ascii_letters + string.digits


def check_iqn(name: str) -> str:
    """``name`` when it is a valid iSCSI initiator name, else ``InvalidInitiator``."""
    if (
        not isinstance(name, str)
        or len(name.encode()) > MAX_IQN
        or not (_IQN.match(name.lower()) or _EUI.match(name) or _NAA.match(name))
    ):
        raise exception.InvalidInitiator(
            name=str(name)[:256],
            kind="iSCSI qualified name (IQN), like iqn.2004-10.com.example:host1",
        )
    return name


def check_nqn(name: str) -> str:
    """``name`` when it is a valid NVMe qualified name, else ``InvalidInitiator``."""
    uuid_form = isinstance(name, str) and name.startswith(_UUID_PREFIX)
    if (
        not isinstance(name, str)
        or len(name.encode()) > MAX_NQN
        or not (_NQN_UUID.match(name) if uuid_form else _NQN.match(name))
    ):
        raise exception.InvalidInitiator(
            name=str(name)[:256],
            kind="NVMe qualified name (NQN), like nqn.2014-08.org.nvmexpress:uuid:<uuid>",
        )
    return name


def target_iqn(prefix: str, volume_id: str) -> str:
    """The iSCSI target of a volume: ``<target_prefix>volume-<id>``, as Cinder names it."""
    return f"{prefix}volume-{volume_id}"


def target_nqn(prefix: str, volume_id: str) -> str:
    """The NVMe subsystem of a volume: the IQN's form with ``nqn.`` for ``iqn.``."""
    if prefix.startswith("iqn."):
        prefix = "nqn." + prefix[len("iqn.") :]
    elif not prefix.startswith("nqn."):
        prefix = "nqn." + prefix
    return f"{prefix}volume-{volume_id}"


def chap_credentials() -> tuple[str, str]:
    """A fresh (username, password) pair for one volume's targets."""
    pick = lambda length: "".join(secrets.choice(_CHAP_ALPHABET) for _ in range(length))  # noqa: E731
    return pick(CHAP_USERNAME_LENGTH), pick(CHAP_PASSWORD_LENGTH)
