"""The lesspy codec (docs/PROTOCOL.md): the mapping header, and values, calls and replies to bytes and back.

Bytes in, values out: no files, sockets or threads (the transport moves the frames), and no policy of what a
Python value may become (lesspy_kernel.coerce). decode.py is the reference decoder; fastdecode.py decodes the
common calls faster and must agree with it on every frame.
"""

from .constants import (DTYPE_CODE_OF, DTYPE_CODES, DTYPE_NAMES, DTYPES, FLAG_REPLY_IN_REQUEST, INT32_RANGE,
                        INT64_RANGE, KIND_UNSPECIFIED, KIND_UTC, MAX_DATETIME_TICKS, MAX_DEPTH, MAX_ERROR_MESSAGE,
                        MAX_ERROR_TRACEBACK, MAX_ERROR_TYPE, MAX_FIELDS, MAX_NAME_BYTES, MAX_NDIM, MAX_RECT_NDIM,
                        MAX_TUPLE, PROTOCOL_VERSION, REQUEST_CALL, REQUEST_CLOSE, REQUEST_NEXT, REQUEST_STREAM,
                        SCALAR_DTYPES, STATUS_END, STATUS_ERROR, STATUS_OK, TICKS_PER_MICROSECOND, ErrorKind, Tag)
from .decode import decode_error, decode_reply, decode_value, ticks_to_datetime, ticks_to_timedelta
from .encode import (call_bytes, encode_desc, encode_error, error_size, fit_error, value_bytes, value_size,
                     write_error, write_placed_ndarray, write_reply_in_request, write_scalar_reply, write_value)
from .errors import FrameError, TextError
from .fastdecode import PREFIX_BUDGET, PREFIX_ENTRY_MAX, decode_call, forget_prefix, prefix_cache_bytes
from .header import (CANCEL_OFFSET, CANCEL_WORD, CAPACITY_OFFSET, CAPACITY_WORD, FIRST_WORD, FLAGS_INT, FLAGS_OFFSET,
                     HEADER, HEADER_SIZE, LENGTH_OFFSET, LENGTH_WORD, MAGIC_WORD, MAPPING_MAGIC, NDARRAY_ALIGN, SEQUENCE_OFFSET,
                     SEQUENCE_WORD, SESSION_OFFSET, SESSION_WORD, STATUS_INT, STATUS_OFFSET, VERSION_OFFSET,
                     WAITING_INT, WAITING_OFFSET, ndarray_data_offset, payload_offset, read_header, restore_header, write_header)
from .message import (MAX_MESSAGE_PAYLOAD, MESSAGE_SEQUENCE_NONE, MessageHeader, cancel_message,
                      check_client_message, check_server_message, keepalive_message, message_header,
                      pack_message_header, read_message_header)
from .types import (ArrayOf, Call, DictOf, ErrorReply, ListOf, Nullable, Record, RectArray, ScalarOf, TypeDesc,
                    accepts_none, csharp_name, field_key)

__all__ = [
    "DTYPE_CODE_OF", "DTYPE_CODES", "DTYPE_NAMES", "DTYPES", "FLAG_REPLY_IN_REQUEST", "INT32_RANGE", "INT64_RANGE",
    "KIND_UNSPECIFIED", "KIND_UTC", "MAX_DATETIME_TICKS", "MAX_DEPTH", "MAX_ERROR_MESSAGE", "MAX_ERROR_TRACEBACK",
    "MAX_ERROR_TYPE", "MAX_FIELDS", "MAX_NAME_BYTES", "MAX_NDIM", "MAX_RECT_NDIM", "MAX_TUPLE", "PROTOCOL_VERSION",
    "REQUEST_CALL", "REQUEST_CLOSE", "REQUEST_NEXT", "REQUEST_STREAM", "SCALAR_DTYPES", "STATUS_END", "STATUS_ERROR",
    "STATUS_OK", "TICKS_PER_MICROSECOND", "ErrorKind", "Tag",
    "decode_error", "decode_reply", "decode_value", "ticks_to_datetime", "ticks_to_timedelta",
    "call_bytes", "encode_desc", "encode_error", "error_size", "fit_error", "value_bytes", "value_size",
    "write_error", "write_placed_ndarray", "write_reply_in_request", "write_scalar_reply", "write_value",
    "FrameError", "TextError",
    "PREFIX_BUDGET", "PREFIX_ENTRY_MAX", "decode_call", "forget_prefix", "prefix_cache_bytes",
    "CANCEL_OFFSET", "CANCEL_WORD", "CAPACITY_OFFSET", "CAPACITY_WORD", "FIRST_WORD", "FLAGS_INT", "FLAGS_OFFSET",
    "HEADER", "HEADER_SIZE", "LENGTH_OFFSET", "LENGTH_WORD", "MAGIC_WORD", "MAPPING_MAGIC", "NDARRAY_ALIGN", "SEQUENCE_OFFSET",
    "SEQUENCE_WORD", "SESSION_OFFSET", "SESSION_WORD", "STATUS_INT", "STATUS_OFFSET", "VERSION_OFFSET",
    "WAITING_INT", "WAITING_OFFSET", "ndarray_data_offset", "payload_offset", "read_header", "restore_header", "write_header",
    "MAX_MESSAGE_PAYLOAD", "MESSAGE_SEQUENCE_NONE", "MessageHeader", "cancel_message", "check_client_message",
    "check_server_message", "keepalive_message", "message_header", "pack_message_header", "read_message_header",
    "ArrayOf", "Call", "DictOf", "ErrorReply", "ListOf", "Nullable", "Record", "RectArray", "ScalarOf", "TypeDesc",
    "accepts_none", "csharp_name", "field_key",
]
