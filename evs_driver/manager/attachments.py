"""Attaching volumes and serving snapshots (EVS rule 2.1: in-use volumes keep working).

Invariants: a volume is ``in-use`` exactly while it has a connection made by a live manager
(``_release_dead_attachments`` frees those of a dead one at the next start); a snapshot is
served only while ``available``, and is not deleted while served (both under
``_serve_lock``).
"""

from oslo_log import log as logging

from evs_driver import catalog as cat
from evs_driver import exception, rules
from evs_driver.manager.base import ManagerBase
from evs_driver.manager.volumes import _named

LOG = logging.getLogger(__name__)


class AttachOperations(ManagerBase):
    """Connections of volumes and snapshots to hosts."""

    def attach_volume(self, ref: str, connector: dict) -> dict:
        """Mark a volume in-use and return its connection info; attaching a volume that is
        already attached here the same way returns the same info."""
        if self.block_request(ref, connector):
            return self.attach_block(ref, connector)  # iscsi, nvmeof, local: see manager.block
        with self.catalog.transaction() as txn:
            volume = self._find(txn, "volume", ref)
            self._require_enabled(volume.backend)
            again = volume.status == "in-use" and self.served(volume) is not None
            connector = self._nbd_connector(txn, volume, ref, connector)
            if not again:
                rules.expect_status("Volume", volume, ("available",), "attaching")
                undo = self._restore(volume)
                # The owner lets a later start tell an attachment whose server died.
                txn.move_status(volume, "in-use", expect=("available",), task=self._task("attach"))
        if again:
            # The exporter answers a repeated request with the existing export's info.
            try:
                return self.driver_for(volume).initialize_connection(volume, connector)
            except exception.AlreadyExists:
                raise exception.VolumeAttached(
                    name=volume.id, action="attaching it another way (read-only or elsewhere)"
                ) from None
        with self._backend(volume.backend, undo) as driver, self._failing_to(volume, "available"):
            info = driver.initialize_connection(volume, connector)
        LOG.info(
            "Attached volume %s (%s): %s",
            volume.id,
            _named(volume),
            info["data"].get("uri") or info["driver_volume_type"],
        )
        return info

    def detach_volume(self, ref: str, connector: dict) -> cat.Volume:
        """End a volume's connection (its clients are disconnected) and make it available
        again; a volume that is not attached is fine."""
        if self.has_block_attachments(ref):
            self.detach_block(ref, connector)
            return self.get_volume(ref)
        with self.catalog.reading() as txn:
            volume = self._find(txn, "volume", ref)
        if volume.status == "available" and self.served(volume) is None:
            return volume  # already detached: a second unserve succeeds
        rules.expect_status("Volume", volume, ("in-use",), "detaching")
        clients = (self.served(volume) or {}).get("connections", 0)
        with self.lock(volume.backend) as driver:
            driver.terminate_connection(volume, connector)
        with self.catalog.transaction() as txn:
            txn.move_status(volume, "available", expect=("in-use",), task=None)
        LOG.info(
            "Detached volume %s (%s)%s",
            volume.id,
            _named(volume),
            f", disconnecting {clients} client(s)" if clients else "",
        )
        return volume

    def serve_snapshot(self, ref: str, connector: dict) -> tuple[cat.Snapshot, dict, bool]:
        """Serve a snapshot read-only (its status does not change); serving one that is
        served already returns that export. Returns the snapshot, the connection info and
        whether this call made the export."""
        with self._serve_lock:
            snapshot = self.get_snapshot(ref)
            self._require_enabled(snapshot.backend)
            existing = self.served(snapshot)
            if existing:
                return snapshot, {"driver_volume_type": "nbd", "data": existing}, False
            rules.expect_status("Snapshot", snapshot, ("available",), "serving")
            connector = self.nbd_connector(snapshot, ref, connector)
            with self.lock(snapshot.backend) as driver:
                info = driver.initialize_connection_snapshot(snapshot, connector)
        LOG.info(
            "Serving snapshot %s (%s) at %s", snapshot.id, _named(snapshot), info["data"]["uri"]
        )
        return snapshot, info, True

    def exports(self) -> list[dict]:
        """Every export this process serves, with its connection count."""
        return self.exporter.exports() if self.exporter is not None else []

    def unserve_snapshot(self, ref: str) -> cat.Snapshot:
        """Stop serving a snapshot; one not served is fine."""
        snapshot = self.get_snapshot(ref)
        with self._serve_lock:
            if self.served(snapshot) is not None:
                with self.lock(snapshot.backend) as driver:
                    driver.terminate_connection_snapshot(snapshot, {})
                LOG.info("Stopped serving snapshot %s (%s)", snapshot.id, _named(snapshot))
        return snapshot

    def nbd_connector(self, record, ref: str, connector: dict) -> dict:
        """``connector`` with ``nbd_name``: the record's name as its second NBD export name,
        when that name is no other volume's or snapshot's name or id.

        Serving by a shared name (``ref``) is refused, as a client could not tell the
        devices apart; served by id, such a record is exported under its id only."""
        with self.catalog.transaction() as txn:
            return self._nbd_connector(txn, record, ref, connector)

    def _nbd_connector(self, txn: cat.Txn, record, ref: str, connector: dict) -> dict:
        name = record.display_name
        if not name:
            return connector
        clash = _name_clash(txn, name, record.id)
        if clash is None:
            return dict(connector, nbd_name=name)
        if ref == name:
            raise exception.AmbiguousExportName(name=name, other=clash, id=record.id)
        LOG.warning(
            "%s is served under its id only: its name %s is also %s", record.id, name, clash
        )
        return connector

    def _release_dead_attachments(self) -> None:
        """Make volumes attached by a manager that died available: their exports died too."""
        with self.catalog.reading() as txn:
            attached = txn.in_status("volumes", ("in-use",))
        for volume in attached:
            task = volume.task or {}
            if task.get("op") != "attach" or self.owner.is_alive(task.get("owner")):
                continue  # set by hand (reset-state), or still served by a live manager
            try:
                with self.catalog.transaction() as txn:
                    txn.move_status(volume, "available", expect=("in-use",), task=None)
            except exception.StatusChanged:
                continue  # released by another starting manager, or reset by hand
            LOG.warning("Volume %s was attached by a stopped service; now available", volume.id)


def _name_clash(txn: cat.Txn, name: str, own_id: str) -> str | None:
    """What else ``name`` stands for among volumes and snapshots; None when nothing."""
    for kind, by_id, by_name in (
        ("volume", txn.volume, txn.volumes),
        ("snapshot", txn.snapshot, txn.snapshots),
    ):
        if by_id(name) is not None:
            return f"the id of a {kind}"
        others = [record.id for record in by_name(name=name) if record.id != own_id]
        if others:
            return f"the name of {kind} {others[0]}"
    return None
