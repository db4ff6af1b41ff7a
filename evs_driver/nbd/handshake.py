"""The fixed newstyle handshake: greet, haggle options, pick an export and open its device.

Anything a client sends that the protocol says must end the session raises
``NBDProtocolError``; every other bad option gets an error reply and haggling goes on.
"""

import logging
import socket
import ssl
import struct
from collections.abc import Callable

from evs_driver import exception
from evs_driver.nbd import metacontext, tls
from evs_driver.nbd import protocol as p
from evs_driver.nbd.exports import Export, ExportRegistry
from evs_driver.nbd.session import BlockSizes, Session, transmission_flags
from evs_driver.nbd.stream import SocketReader

LOG = logging.getLogger(__name__)

MAX_OPTIONS = 256  # options one connection may send before it must pick an export
_U32 = struct.Struct(">I")
_U16 = struct.Struct(">H")


class Handshake:
    """Runs the handshake on one connection."""

    def __init__(
        self,
        sock: socket.socket,
        reader: SocketReader,
        registry: ExportRegistry,
        sizes: BlockSizes,
        attach: Callable[[Export], None],
        refusal: str | None = None,
        tls_context: ssl.SSLContext | None = None,
        on_tls: Callable[[ssl.SSLSocket], None] = lambda _sock: None,
        namespaces: tuple[metacontext.Namespace, ...] = (metacontext.BASE,),
    ):
        """``attach`` records the connection on its export (raising ``NotFound`` or
        ``NBDExportFull``); with a ``refusal`` every option is answered with that error.
        With a ``tls_context`` TLS is required (NBD's FORCEDTLS mode); ``on_tls`` learns
        the socket that replaces ``sock`` once NBD_OPT_STARTTLS was accepted. ``namespaces``
        offer the metadata contexts."""
        self._sock = sock
        self._reader = reader
        self._registry = registry
        self._sizes = sizes
        self._attach = attach
        self._refusal = refusal
        self._tls_context = tls_context
        self._on_tls = on_tls
        self._namespaces = namespaces
        self._encrypted = False
        self._fixed = False
        self._no_zeroes = False
        self._structured = False
        self._selected: tuple[Export, tuple] | None = None  # SET_META_CONTEXT's export and pick

    @property
    def _needs_tls(self) -> bool:
        return self._tls_context is not None and not self._encrypted

    def run(self) -> Session | None:
        """Negotiate; return the session to serve, or None when the client aborted."""
        self._sock.sendall(
            p.SERVER_GREETING.pack(p.NBDMAGIC, p.IHAVEOPT, p.FLAG_FIXED_NEWSTYLE | p.FLAG_NO_ZEROES)
        )
        (client_flags,) = p.CLIENT_FLAGS.unpack(self._reader.read(4))
        if client_flags & ~p.KNOWN_CLIENT_FLAGS:
            raise exception.NBDProtocolError(reason=f"unknown client flags {client_flags:#x}")
        self._fixed = bool(client_flags & p.FLAG_C_FIXED_NEWSTYLE)
        self._no_zeroes = bool(client_flags & p.FLAG_C_NO_ZEROES)
        for _ in range(MAX_OPTIONS):
            magic, option, length = p.OPTION_HEADER.unpack(self._reader.read(16))
            if magic != p.IHAVEOPT:
                raise exception.NBDProtocolError(reason=f"bad option magic {magic:#x}")
            if length > p.MAX_OPTION_LENGTH:
                if self._fixed and option != p.OPT_EXPORT_NAME:
                    self._reply(option, p.REP_ERR_TOO_BIG, b"option data too long")
                raise exception.NBDProtocolError(reason=f"option {option} of {length} bytes")
            data = self._reader.read(length)
            if self._refusal and option != p.OPT_ABORT:
                if option == p.OPT_EXPORT_NAME or not self._fixed:
                    raise exception.NBDProtocolError(reason=f"refused: {self._refusal}")
                self._reply(option, p.REP_ERR_POLICY, self._refusal.encode())
                continue
            if option == p.OPT_EXPORT_NAME:
                if self._needs_tls:
                    # This option has no error reply: the protocol says to hang up.
                    raise exception.NBDProtocolError(reason="NBD_OPT_EXPORT_NAME before TLS")
                return self._export_name(data)
            if not self._fixed:
                raise exception.NBDProtocolError(reason=f"option {option} without fixed newstyle")
            if option == p.OPT_ABORT:
                self._reply(option, p.REP_ACK)
                return None
            if option == p.OPT_STARTTLS:
                self._starttls(data)
            elif self._needs_tls:
                self._reply(option, p.REP_ERR_TLS_REQD, b"TLS is required: send NBD_OPT_STARTTLS")
            elif option == p.OPT_LIST:
                self._list(data)
            elif option == p.OPT_STRUCTURED_REPLY:
                self._structured_reply(data)
            elif option in (p.OPT_LIST_META_CONTEXT, p.OPT_SET_META_CONTEXT):
                self._meta_context(option, data)
            elif option in (p.OPT_INFO, p.OPT_GO):
                session = self._info(option, data)
                if session is not None:
                    return session
            else:
                self._reply(option, p.REP_ERR_UNSUP, f"option {option} is not supported".encode())
        raise exception.NBDProtocolError(reason=f"more than {MAX_OPTIONS} options")

    # -- options -------------------------------------------------------------------------
    def _starttls(self, data: bytes) -> None:
        if self._tls_context is None:
            self._reply(p.OPT_STARTTLS, p.REP_ERR_POLICY, b"TLS is not offered on this address")
        elif self._encrypted:
            self._reply(p.OPT_STARTTLS, p.REP_ERR_INVALID, b"TLS is already running")
        elif data:
            self._reply(p.OPT_STARTTLS, p.REP_ERR_INVALID, b"NBD_OPT_STARTTLS takes no data")
        elif self._reader.pending:
            # Bytes sent before our answer would be taken as if they came under TLS.
            raise exception.NBDProtocolError(reason="data sent after NBD_OPT_STARTTLS unasked")
        else:
            self._reply(p.OPT_STARTTLS, p.REP_ACK)
            self._sock = self._reader.sock = tls.wrap(self._sock, self._tls_context)
            self._on_tls(self._sock)
            tls.handshake(self._sock, self._reader.deadline)
            self._encrypted = True
            self._structured, self._selected = False, None  # nothing from before TLS holds

    def _structured_reply(self, data: bytes) -> None:
        if data:
            self._reply(p.OPT_STRUCTURED_REPLY, p.REP_ERR_INVALID, b"it takes no data")
            return
        self._structured = True
        self._reply(p.OPT_STRUCTURED_REPLY, p.REP_ACK)

    def _meta_context(self, option: int, data: bytes) -> None:
        listing = option == p.OPT_LIST_META_CONTEXT
        if not listing:
            self._selected = None  # a SET replaces the selection, even when it fails
        if not self._structured:
            self._reply(option, p.REP_ERR_INVALID, b"negotiate structured replies first")
            return
        parsed = metacontext.parse_request(data)
        if parsed is None:
            self._reply(option, p.REP_ERR_INVALID, b"malformed metadata context request")
            return
        raw_name, queries = parsed
        export = self._resolve(raw_name)
        if export is None:
            self._reply(option, p.REP_ERR_UNKNOWN, b"no such export: " + _utf8(raw_name, 256))
            return
        namespaces = (*self._namespaces, *export.namespaces)
        contexts = metacontext.select(namespaces, queries, listing)
        if contexts is None:
            self._reply(
                option, p.REP_ERR_INVALID, b"a query is namespace:name, e.g. base:allocation"
            )
            return
        for number, context in enumerate(contexts, start=1):
            context_id = 0 if listing else number  # LIST's ids are reserved: zero
            self._reply(option, p.REP_META_CONTEXT, _U32.pack(context_id) + context.name.encode())
        if not listing:
            self._selected = (export, tuple(contexts))
        self._reply(option, p.REP_ACK)

    def _export_name(self, data: bytes) -> Session:
        export = self._resolve(data)
        if export is None:
            # This old option has no error reply: the protocol says to hang up.
            raise exception.NBDProtocolError(reason=f"unknown export {data[:64]!r}")
        session = self._open(export)
        try:
            self._attach(export)
        except exception.EVSError as exc:
            session.device.close()
            raise exception.NBDProtocolError(reason=str(exc)) from None
        reply = p.EXPORT_NAME_REPLY.pack(session.size, session.flags)
        if not self._no_zeroes:
            reply += bytes(124)
        _closing_on_error(session, self._sock.sendall, reply)
        return session

    def _list(self, data: bytes) -> None:
        if data:
            self._reply(p.OPT_LIST, p.REP_ERR_INVALID, b"NBD_OPT_LIST takes no data")
            return
        for export in self._registry.exports():
            # Text after the name is a description for humans (nbdinfo --list shows it).
            name = export.name.encode()
            text = _utf8(export.description, p.MAX_NAME_LENGTH)
            self._reply(p.OPT_LIST, p.REP_SERVER, _U32.pack(len(name)) + name + text)
        self._reply(p.OPT_LIST, p.REP_ACK)

    def _info(self, option: int, data: bytes) -> Session | None:
        parsed = _parse_info_request(data)
        if parsed is None:
            self._reply(option, p.REP_ERR_INVALID, b"malformed NBD_OPT_INFO/GO request")
            return None
        raw_name, requests = parsed
        export = self._resolve(raw_name)
        if export is None:
            self._reply(option, p.REP_ERR_UNKNOWN, b"no such export: " + _utf8(raw_name, 256))
            return None
        try:
            session = self._open(export)
        except Exception as exc:
            # The client can do nothing about a server-side failure but hear of it.
            LOG.warning("NBD export %s could not be opened: %s", export.name, exc)
            self._reply(option, p.REP_ERR_UNKNOWN, _utf8(str(exc), 1024))
            return None
        if option == p.OPT_GO:
            try:
                self._attach(export)
            except (exception.NotFound, exception.NBDExportFull) as exc:
                # Removed while we negotiated, or full: the client hears why.
                session.device.close()
                full = isinstance(exc, exception.NBDExportFull)
                self._reply(
                    option, p.REP_ERR_POLICY if full else p.REP_ERR_UNKNOWN, exc.msg.encode()
                )
                return None
        _closing_on_error(session, self._send_info, option, session, requests)
        if option == p.OPT_INFO:
            session.device.close()
            self._reply(option, p.REP_ACK)
            return None
        _closing_on_error(session, self._reply, option, p.REP_ACK)
        return session

    def _send_info(self, option: int, session: Session, requests: set[int]) -> None:
        self._reply(
            option, p.REP_INFO, p.INFO_EXPORT_DATA.pack(p.INFO_EXPORT, session.size, session.flags)
        )
        if p.INFO_NAME in requests:
            self._reply(option, p.REP_INFO, _U16.pack(p.INFO_NAME) + session.export.name.encode())
        if p.INFO_DESCRIPTION in requests and session.export.description:
            text = _utf8(session.export.description, p.MAX_NAME_LENGTH)
            self._reply(option, p.REP_INFO, _U16.pack(p.INFO_DESCRIPTION) + text)
        sizes = self._sizes
        block = p.INFO_BLOCK_SIZE_DATA.pack(
            p.INFO_BLOCK_SIZE, sizes.minimum, sizes.preferred, sizes.maximum
        )
        self._reply(option, p.REP_INFO, block)

    # -- helpers -------------------------------------------------------------------------
    def _resolve(self, raw_name: bytes) -> Export | None:
        try:
            name = raw_name.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return self._registry.lookup(name)

    def _open(self, export: Export) -> Session:
        device = export.opener()
        try:
            read_only = export.read_only or bool(device.read_only)
            size = device.size
            flags = transmission_flags(device, read_only)
            # Contexts hold only for the export they were selected on.
            selected = self._selected
            contexts = selected[1] if selected and selected[0] is export else ()
            return Session(export, device, size, flags, self._structured, contexts)
        except BaseException:
            device.close()
            raise

    def _reply(self, option: int, reply_type: int, data: bytes = b"") -> None:
        self._sock.sendall(p.OPTION_REPLY.pack(p.REPLY_MAGIC, option, reply_type, len(data)) + data)


def _closing_on_error(session: Session, send, *args) -> None:
    """Call ``send``; if it fails, close the session's device before passing the error on."""
    try:
        send(*args)
    except BaseException:
        session.device.close()
        raise


def _utf8(text: str | bytes, limit: int) -> bytes:
    """At most ``limit`` bytes of valid UTF-8 (protocol strings must be; cuts drop a partial
    character, and bytes a client sent that are not UTF-8 are dropped)."""
    if isinstance(text, str):
        text = text.encode("utf-8", "replace")
    return text[:limit].decode("utf-8", "ignore").encode()


def _parse_info_request(data: bytes) -> tuple[bytes, set[int]] | None:
    """Split NBD_OPT_INFO/GO data into (export name, requested info types); None if malformed."""
    if len(data) < 6:
        return None
    (name_length,) = _U32.unpack_from(data)
    if name_length > p.MAX_NAME_LENGTH or 4 + name_length + 2 > len(data):
        return None
    name = data[4 : 4 + name_length]
    (count,) = _U16.unpack_from(data, 4 + name_length)
    start = 4 + name_length + 2
    if start + 2 * count != len(data):
        return None
    requests = {_U16.unpack_from(data, start + 2 * i)[0] for i in range(count)}
    return name, requests
