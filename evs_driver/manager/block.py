"""Block attachments: an initiator's access to a volume over iscsi, nvmeof or local.

Invariants: a volume with any block attachment is ``in-use``, and every one is a catalog
row (``attachments``) written with the status move, before the driver exports anything.
A crash part-way so leaves a row that ``restore_attachments`` completes when the service
starts (attaching is idempotent); a failure removes the row and undoes what the attach made
that no other attachment needs. Block attachments outlive the process that made them: the
kernel holds the devices and targets, so a restart re-establishes rather than releases them.
"""

import time

from oslo_log import log as logging

from evs_driver import catalog as cat
from evs_driver import exception, rules
from evs_driver.manager.base import ManagerBase
from evs_driver.manager.volumes import _named

LOG = logging.getLogger(__name__)
MULTIATTACH_KEY = "multiattach"
_INITIATOR_KEYS = {"iscsi": "initiator", "nvmeof": "nqn", "local": "host"}


def _multiattach(volume: cat.Volume) -> bool:
    value = str(volume.metadata.get(MULTIATTACH_KEY, "")).lower()
    return value in ("true", "1", "yes", "<is> true")


def _connector(attachment: cat.Attachment) -> dict:
    """The attachment's connector, naming its protocol (the default one may change)."""
    return dict(attachment.connector, protocol=attachment.protocol)


def _matches(attachment: cat.Attachment, connector: dict) -> bool:
    """True when ``connector`` names this attachment (every one when it names none)."""
    protocol = connector.get("protocol")
    if protocol and protocol != attachment.protocol:
        return False
    if not any(connector.get(key) for key in _INITIATOR_KEYS.values()):
        return True
    wanted = connector.get(_INITIATOR_KEYS[attachment.protocol])
    return wanted is not None and wanted.lower() == attachment.initiator.lower()


def _view(attachment: cat.Attachment) -> dict:
    return {
        "volume": attachment.volume_id,
        "protocol": attachment.protocol,
        "initiator": attachment.initiator,
        "attached_at": attachment.created_at,
    }


class BlockAttachOperations(ManagerBase):
    """Block attachments of volumes, recorded per initiator."""

    def block_request(self, ref: str, connector: dict) -> bool:
        """True when ``connector`` asks for a block protocol (else: an NBD export)."""
        volume = self.get_volume(ref)
        self._require_enabled(volume.backend)
        return self.driver_for(volume).attach_request(connector) is not None

    def has_block_attachments(self, ref: str) -> bool:
        """True when the volume has block attachments."""
        volume = self.get_volume(ref)
        with self.catalog.transaction() as txn:
            return bool(txn.attachments(volume.id))

    def attach_block(self, ref: str, connector: dict) -> dict:
        """Give the connector's initiator access to a volume; the same again changes nothing."""
        volume = self.get_volume(ref)
        self._require_enabled(volume.backend)
        with self.lock(volume.backend) as driver:
            protocol, initiator = driver.attach_request(connector)
            with self.catalog.transaction() as txn:
                volume = self._find(txn, "volume", volume.id)
                existing = txn.attachments(volume.id)
                again = any((a.protocol, a.initiator) == (protocol, initiator) for a in existing)
                if not again:
                    _check_new(volume, existing, initiator)
                    attachment = cat.Attachment(
                        volume.id,
                        protocol,
                        initiator,
                        dict(connector, protocol=protocol),
                        cat.now(),
                    )
                    txn.add_attachment(attachment)
                    txn.move_status(volume, "in-use", expect=(volume.status,), task=None)
            try:
                update = driver.create_export(None, volume, dict(connector, protocol=protocol))
                if update:
                    with self.catalog.transaction() as txn:
                        txn.set_fields(volume, **update)
                info = driver.initialize_connection(volume, dict(connector, protocol=protocol))
            except BaseException:
                if not again:
                    self._undo_attach(driver, volume, attachment)
                raise
        LOG.info(
            "Attached volume %s (%s) over %s to %s", volume.id, _named(volume), protocol, initiator
        )
        return info

    def _undo_attach(self, driver, volume: cat.Volume, attachment: cat.Attachment) -> None:
        """Remove a failed attach's row, and what it made that nothing else needs."""
        with self.catalog.transaction() as txn:
            txn.remove_attachment(attachment)
            others = txn.attachments(volume.id)
            if not others:
                txn.move_status(volume, "available", expect=("in-use",), task=None)
        try:
            driver.terminate_connection(volume, _connector(attachment))
            _remove_unused(driver, volume, [attachment], others)
        except exception.EVSError:
            LOG.exception("Could not undo the failed attach of %s", volume.id)

    def detach_block(self, ref: str, connector: dict) -> list[dict]:
        """End the access of the connector's initiator (every initiator's when it names none)."""
        volume = self.get_volume(ref)
        self._require_enabled(volume.backend)
        with self.lock(volume.backend) as driver:
            with self.catalog.transaction() as txn:
                rows = txn.attachments(volume.id)
            gone = [a for a in rows if _matches(a, connector)]
            if not gone:
                named = ", ".join(f"{a.protocol} {a.initiator}" for a in rows)
                raise exception.NotFound(
                    kind=f"Attachment of volume {volume.id} to",
                    name=f"{_describe(connector)} (it has: {named or 'none'})",
                )
            remaining = [a for a in rows if a not in gone]
            for attachment in gone:
                driver.terminate_connection(volume, _connector(attachment))
            _remove_unused(driver, volume, gone, remaining)
            with self.catalog.transaction() as txn:
                for attachment in gone:
                    txn.remove_attachment(attachment)
                if not txn.attachments(volume.id):
                    txn.move_status(volume, "available", expect=("in-use",), task=None)
        for attachment in gone:
            LOG.info(
                "Detached volume %s (%s) from %s %s",
                volume.id,
                _named(volume),
                attachment.protocol,
                attachment.initiator,
            )
        return [_view(a) for a in gone]

    def block_attachments(self, volume_id: str | None = None) -> list[dict]:
        """Every block attachment in the catalog, or one volume's."""
        with self.catalog.reading() as txn:
            return [_view(a) for a in txn.attachments(volume_id)]

    def block_exports(self) -> list[dict]:
        """The kernel NBD devices and targets of this host, with their initiators."""
        rows, seen = [], set()
        for _name, driver in self.drivers.started():
            for row in driver.block_exports():
                if (row["protocol"], row["target"]) not in seen:
                    seen.add((row["protocol"], row["target"]))
                    rows.append(row)
        return rows

    def restore_attachments(self) -> None:
        """Re-establish every recorded attachment (service start): devices, targets, ACLs."""
        with self.catalog.transaction() as txn:
            rows = txn.attachments()
        started = time.monotonic()
        for attachment in rows:
            try:
                volume = self.get_volume(attachment.volume_id)
                with self.lock(volume.backend) as driver:
                    driver.create_export(None, volume, _connector(attachment))
                    driver.initialize_connection(volume, _connector(attachment))
            except exception.EVSError:
                LOG.exception(
                    "Could not restore the attachment of %s to %s",
                    attachment.volume_id,
                    attachment.initiator,
                )
        if rows:
            LOG.info("Restored %d attachment(s) in %.1fs", len(rows), time.monotonic() - started)


def _check_new(volume: cat.Volume, existing: list, initiator: str) -> None:
    if not existing:
        rules.expect_status("Volume", volume, ("available",), "attaching")
        return
    rules.expect_status("Volume", volume, ("in-use",), "attaching")
    if not _multiattach(volume):
        raise exception.InvalidOperation(
            reason=f"volume {volume.id} is attached to {existing[0].initiator}; attaching it "
            f"to {initiator} as well needs a multiattach volume (property "
            f"{MULTIATTACH_KEY}=true), and the initiators' file systems must share it safely"
        )


def _remove_unused(driver, volume, gone: list, remaining: list) -> None:
    kept = {a.protocol for a in remaining}
    protocols = [p for p in {a.protocol for a in gone} if p not in kept]
    driver.remove_block_export(volume, protocols, release_device=not remaining)


def _describe(connector: dict) -> str:
    keys = ("protocol", *_INITIATOR_KEYS.values())
    return " ".join(f"{k}={connector[k]}" for k in keys if connector.get(k)) or "any initiator"
