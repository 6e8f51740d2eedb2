"""The numbers both sides of the wire agree on (docs/PROTOCOL.md): version, tags, error kinds, dtype codes,
statuses, request kinds and limits."""

from __future__ import annotations

from enum import IntEnum

import numpy as np

PROTOCOL_VERSION = 2
MAX_NAME_BYTES = 1024
MAX_NDIM = 32
MAX_TUPLE = 7
FLAG_REPLY_IN_REQUEST = 1       # request flag: the client takes an NDARRAY_IN_REQUEST reply (PROTOCOL.md section 7)
# what an error reply keeps at most of each part: a hostile exception must not outgrow the reply
MAX_ERROR_TYPE = 256
MAX_ERROR_MESSAGE = 64 * 1024
MAX_ERROR_TRACEBACK = 256 * 1024

# response statuses
STATUS_OK = 0
STATUS_ERROR = 1
STATUS_END = 2                  # response: the stream has no more items (or was closed)
# request statuses: what the lane's request file asks for
REQUEST_CALL = 0
REQUEST_NEXT = 1                # the next item of the lane's open stream
REQUEST_CLOSE = 2               # close the lane's open stream
REQUEST_STREAM = 3              # a call whose result is streamed item by item (C# IEnumerable<T>)


class Tag(IntEnum):
    """Value type tags: the first byte of every value, and the type descriptors of declared C# types."""

    NONE = 0x00
    BOOL = 0x01
    INT32 = 0x02
    INT64 = 0x03
    FLOAT32 = 0x04
    FLOAT64 = 0x05
    STRING = 0x06
    BYTES = 0x07
    INT32_ARRAY = 0x08
    INT32_JAGGED = 0x09
    TUPLE = 0x0A
    NDARRAY = 0x0B
    NDARRAY_AT = 0x0C      # requests only: an NDARRAY whose data lies further on in the payload
    ARRAY = 0x0D           # a 1-D array of one dtype (double[], bool[], ...)
    LIST = 0x0E            # count, then tagged values (string[], List<T>, ...)
    DICT = 0x0F            # count, then UTF-8 key + tagged value pairs (Dictionary<string, T>)
    DATETIME = 0x10
    TIMESPAN = 0x11
    GUID = 0x12
    SCALAR = 0x13          # an integer of a dtype with no tag of its own (byte, short, uint, ...)
    RECORD = 0x14          # field count, then name + tagged value pairs (a class/struct <-> a dataclass)
    OPTIONAL = 0x15        # descriptors only: a nullable value type (int?): NONE or the inner value
    RECT_ARRAY = 0x16      # descriptors only: a rectangular C# array (double[,]), carried as NDARRAY
    NDARRAY_IN_REQUEST = 0x17  # replies only: an NdArray result whose data is part of the request's payload


# hot-path aliases: an enum member is a class attribute lookup each time
NONE, INT32, INT64, FLOAT64, NDARRAY = Tag.NONE, Tag.INT32, Tag.INT64, Tag.FLOAT64, Tag.NDARRAY


class ErrorKind(IntEnum):
    """What went wrong, so the C# side can throw the matching exception type."""

    PYTHON_ERROR = 1
    FUNCTION_NOT_FOUND = 2
    BAD_ARGUMENTS = 3
    RESULT_MISMATCH = 4
    PAYLOAD_TOO_LARGE = 5
    MALFORMED_REQUEST = 6
    SERVER_ERROR = 7
    CANCELLED = 8
    INTERRUPTED = 9


DTYPE_CODES = {
    "bool": 1, "int8": 2, "uint8": 3, "int16": 4, "uint16": 5, "int32": 6, "uint32": 7,
    "int64": 8, "uint64": 9, "float16": 10, "float32": 11, "float64": 12, "complex64": 13, "complex128": 14,
}
DTYPE_NAMES = {code: name for name, code in DTYPE_CODES.items()}
DTYPES = {code: np.dtype(name).newbyteorder("<") for code, name in DTYPE_NAMES.items()}   # made once, looked up
# the code of a little-endian (or byte-order-free) dtype, looked up by the dtype itself: a big-endian one is absent
DTYPE_CODE_OF = {dtype: code for code, dtype in DTYPES.items()}
# the integer dtypes a SCALAR carries (int32 and int64 have tags of their own)
SCALAR_DTYPES = ("int8", "uint8", "int16", "uint16", "uint32", "uint64")
MAX_DEPTH = 32          # nesting of values and descriptors (lists of lists of records ...)
MAX_FIELDS = 1024       # fields of one record
MAX_RECT_NDIM = 32
INT32_RANGE = (-(2**31), 2**31 - 1)
INT64_RANGE = (-(2**63), 2**63 - 1)

# DateTime / TimeSpan: 100 ns ticks; DateTime counts from 0001-01-01T00:00:00
TICKS_PER_MICROSECOND = 10
MAX_DATETIME_TICKS = 3155378975999999999           # DateTime.MaxValue.Ticks
KIND_UNSPECIFIED = 0
KIND_UTC = 1
