namespace LessPy
{
    /// <summary>The value tags and type descriptor tags of PROTOCOL.md sections 4 and 5.</summary>
    internal enum Tag : byte
    {
        None = 0x00, Bool = 0x01, Int32 = 0x02, Int64 = 0x03, Float32 = 0x04, Float64 = 0x05, String = 0x06,
        Bytes = 0x07, Int32Array = 0x08, Int32Jagged = 0x09, Tuple = 0x0A, NdArray = 0x0B,
        /// <summary>Requests only: an NDARRAY whose data lies further on in the payload (at an offset aligned to Wire.NdArrayAlign).</summary>
        NdArrayAt = 0x0C,
        /// <summary>A 1-D array of one dtype: double[], bool[], short[] ...</summary>
        Array = 0x0D,
        /// <summary>A count, then tagged values: T[] of a non-primitive T, List&lt;T&gt;, IReadOnlyList&lt;T&gt;, IList&lt;T&gt;.</summary>
        List = 0x0E,
        /// <summary>A count, then UTF-8 key and tagged value pairs: Dictionary&lt;string, T&gt;.</summary>
        Dict = 0x0F,
        DateTime = 0x10, TimeSpan = 0x11, Guid = 0x12,
        /// <summary>An integer of a dtype with no tag of its own: sbyte, byte, short, ushort, uint, ulong.</summary>
        Scalar = 0x13,
        /// <summary>A class or struct, field by field (a Python dataclass / NamedTuple).</summary>
        Record = 0x14,
        /// <summary>Descriptors only: a nullable value type (int?): NONE or the inner value.</summary>
        Optional = 0x15,
        /// <summary>Descriptors only: a rectangular array (double[,]); its values travel as NDARRAY.</summary>
        RectArray = 0x16,
        /// <summary>Replies only, to a call that allowed it: an NdArray result whose data is part of the request's payload.</summary>
        NdArrayInRequest = 0x17,
    }
}
