"""The little-endian struct formats of the wire's fixed-size fields, made once."""

from __future__ import annotations

import struct

from .constants import MAX_NDIM

U8 = struct.Struct("<B")
U16 = struct.Struct("<H")
U32 = struct.Struct("<I")
I32 = struct.Struct("<i")
I64 = struct.Struct("<q")
U64 = struct.Struct("<Q")
F32 = struct.Struct("<f")
F64 = struct.Struct("<d")
SHAPES = [struct.Struct(f"<{n}Q") for n in range(MAX_NDIM + 1)]    # an array's shape, by ndim
ZEROS = bytes(64)                                                  # padding
