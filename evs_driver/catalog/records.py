"""What the catalog holds: volumes, snapshots, attachments, snapshot schedules and groups as
records (Cinder-like)."""

import dataclasses
import datetime
import uuid


def now() -> str:
    """The current UTC time as an ISO 8601 string."""
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def new_id() -> str:
    """A fresh UUID for a volume or snapshot."""
    return str(uuid.uuid4())


class _Record:
    """Dict-style access as well, like Cinder's versioned objects."""

    def __getitem__(self, key: str):
        return getattr(self, key)

    def get(self, key: str, default=None):
        """The field's value, or ``default``."""
        return getattr(self, key, default)

    def to_dict(self) -> dict:
        """The fields as a plain dict."""
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Volume(_Record):
    """A catalog volume; ``size`` is GiB, ``name`` the backend-style ``volume-<id>``."""

    id: str
    display_name: str | None
    display_description: str | None
    size: int
    status: str
    backend: str
    created_at: str
    updated_at: str
    source_snapshot_id: str | None = None
    source_volume_id: str | None = None
    full_clone: bool = False
    progress: int | None = None
    provider_location: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    task: dict | None = None
    provider_auth: str | None = None  # "CHAP <username> <password>" of its targets, as Cinder's
    group_id: str | None = None  # the consistency group it belongs to

    @property
    def name(self) -> str:
        return f"volume-{self.id}"

    @property
    def snapshot_id(self) -> str | None:
        return self.source_snapshot_id

    @property
    def source_volid(self) -> str | None:
        return self.source_volume_id


@dataclasses.dataclass
class Attachment(_Record):
    """One initiator's access to a volume over a block protocol (iscsi, nvmeof, local)."""

    volume_id: str
    protocol: str
    initiator: str
    connector: dict
    created_at: str


@dataclasses.dataclass
class Snapshot(_Record):
    """A catalog snapshot; ``volume_size`` is the volume's size (GiB) when it was taken."""

    id: str
    display_name: str | None
    display_description: str | None
    volume_id: str
    volume_size: int
    status: str
    backend: str
    created_at: str
    updated_at: str
    provider_location: str | None = None
    metadata: dict = dataclasses.field(default_factory=dict)
    task: dict | None = None
    group_snapshot_id: str | None = None  # the group snapshot it was taken in

    @property
    def name(self) -> str:
        return f"snapshot-{self.id}"

    @property
    def size(self) -> int:
        return self.volume_size


@dataclasses.dataclass
class Schedule(_Record):
    """A volume's snapshot schedule: every ``every`` seconds on the grid from ``anchor``, with
    retention ``keep`` (newest), ``keep_daily`` and ``keep_weekly``; times are ISO UTC."""

    id: str
    volume_id: str
    every: int
    keep: int
    keep_daily: int
    keep_weekly: int
    anchor: str
    next_run: str
    created_at: str
    updated_at: str
    last_run: str | None = None
    last_snapshot_id: str | None = None
    last_error: str | None = None


@dataclasses.dataclass
class Group(_Record):
    """A consistency group: volumes (``Volume.group_id``) snapshotted at one instant."""

    id: str
    display_name: str | None
    display_description: str | None
    backend: str
    status: str
    created_at: str
    updated_at: str
    task: dict | None = None

    @property
    def name(self) -> str:
        return f"group-{self.id}"


@dataclasses.dataclass
class GroupSnapshot(_Record):
    """One instant of a group: a snapshot of each member (``Snapshot.group_snapshot_id``)."""

    id: str
    group_id: str
    display_name: str | None
    display_description: str | None
    backend: str
    status: str
    created_at: str
    updated_at: str
    task: dict | None = None

    @property
    def name(self) -> str:
        return f"group-snapshot-{self.id}"
