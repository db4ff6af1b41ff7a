"""NBD wire constants and fixed-size message layouts (all big-endian).

Names follow the protocol document (doc/proto.md of the NBD project) so each value can
be checked against it; only the parts this server speaks are listed.
"""

import struct

# -- handshake -------------------------------------------------------------------------
NBDMAGIC = 0x4E42444D41474943  # "NBDMAGIC"
IHAVEOPT = 0x49484156454F5054  # "IHAVEOPT", also the magic of every client option
REPLY_MAGIC = 0x3E889045565A9  # magic of every option reply

FLAG_FIXED_NEWSTYLE = 1 << 0  # handshake flags (server)
FLAG_NO_ZEROES = 1 << 1
FLAG_C_FIXED_NEWSTYLE = 1 << 0  # client flags
FLAG_C_NO_ZEROES = 1 << 1
KNOWN_CLIENT_FLAGS = FLAG_C_FIXED_NEWSTYLE | FLAG_C_NO_ZEROES

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR_UNSUP = 2**31 + 1
REP_ERR_POLICY = 2**31 + 2
REP_ERR_INVALID = 2**31 + 3
REP_ERR_TLS_REQD = 2**31 + 5
REP_ERR_UNKNOWN = 2**31 + 6
REP_ERR_SHUTDOWN = 2**31 + 7
REP_ERR_TOO_BIG = 2**31 + 9

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

# -- transmission flags ----------------------------------------------------------------
TFLAG_HAS_FLAGS = 1 << 0
TFLAG_READ_ONLY = 1 << 1
TFLAG_SEND_FLUSH = 1 << 2
TFLAG_SEND_FUA = 1 << 3
TFLAG_SEND_TRIM = 1 << 5
TFLAG_SEND_WRITE_ZEROES = 1 << 6
TFLAG_CAN_MULTI_CONN = 1 << 8

# -- transmission ----------------------------------------------------------------------
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_REQ_ONE = 1 << 3

REPLY_FLAG_DONE = 1 << 0  # structured reply flags
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = 2**15 + 1
REPLY_TYPE_ERROR_OFFSET = 2**15 + 2

# Error values are the protocol's own (they equal Linux errno numbers, but a server on
# another platform must still send these).
EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ESHUTDOWN = 108

# -- layouts ---------------------------------------------------------------------------
SERVER_GREETING = struct.Struct(">QQH")  # NBDMAGIC, IHAVEOPT, handshake flags
CLIENT_FLAGS = struct.Struct(">I")
OPTION_HEADER = struct.Struct(">QII")  # IHAVEOPT, option, data length
OPTION_REPLY = struct.Struct(">QIII")  # REPLY_MAGIC, option, reply type, data length
EXPORT_NAME_REPLY = struct.Struct(">QH")  # size, transmission flags (+124 zeros)
INFO_EXPORT_DATA = struct.Struct(">HQH")  # INFO_EXPORT, size, transmission flags
INFO_BLOCK_SIZE_DATA = struct.Struct(">HIII")  # INFO_BLOCK_SIZE, minimum, preferred, maximum
REQUEST = struct.Struct(">IHHQQI")  # magic, command flags, type, cookie, offset, length
SIMPLE_REPLY = struct.Struct(">IIQ")  # magic, error, cookie
CHUNK = struct.Struct(">IHHQI")  # structured reply chunk: magic, flags, type, cookie, length
DATA_CHUNK = struct.Struct(">IHHQIQ")  # a chunk header followed by OFFSET_DATA's offset
EXTENT = struct.Struct(">II")  # a block status descriptor: length, flags
CONTEXT_ID = struct.Struct(">I")  # a BLOCK_STATUS chunk's metadata context id
ERROR_BODY = struct.Struct(">IH")  # an error chunk: error, message length (no message)
OFFSET = struct.Struct(">Q")  # where ERROR_OFFSET failed

MAX_OPTION_LENGTH = 64 * 1024  # longest option data we accept (names are at most 4096 bytes)
MAX_NAME_LENGTH = 4096
