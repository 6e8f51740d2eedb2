using System;
using System.Buffers.Binary;
using System.Runtime.InteropServices;
using System.Text;

namespace LessPy
{
    internal static unsafe partial class Codec
    {
        // ---------------------------------------------------------------- decoding

        static ProtocolException Bad(int pos, string what)
        {
            return new ProtocolException("malformed frame at offset " + pos + ": " + what);
        }

        static void Need(ReadOnlySpan<byte> s, int pos, long n, string what)
        {
            if (n < 0 || pos + n > s.Length)
                throw Bad(pos, what + " needs " + n + " bytes but the frame has " + Math.Max(0, s.Length - pos) + " left");
        }

        /// <summary>
        /// Decodes one value at <paramref name="pos"/>. <paramref name="expected"/> null accepts any value of a type
        /// that needs no declaration and reports its type in <paramref name="actual"/>. An NDARRAY's data is a slice of
        /// <paramref name="mem"/>, not a copy (when <paramref name="mem"/> does not cover <paramref name="s"/>, it is
        /// copied); everything else is copied into managed objects.
        /// </summary>
        public static object Read(ReadOnlyMemory<byte> mem, ReadOnlySpan<byte> s, ref int pos, WireType expected, out WireType actual)
        {
            return Read(mem, s, ref pos, expected, out actual, 0);
        }

        /// <summary>One value: its tag, the checks every value gets (nesting depth, NONE, the declared type), then its family's reader.</summary>
        static object Read(ReadOnlyMemory<byte> mem, ReadOnlySpan<byte> s, ref int pos, WireType expected, out WireType actual, int depth)
        {
            Need(s, pos, 1, "a value tag");
            int at = pos;
            var tag = (Tag)s[pos++];
            if (depth > MaxDepth) throw Bad(at, "values nested deeper than " + MaxDepth);
            if (tag == Tag.None)
            {
                if (expected == null) { actual = WireType.NoneItem; return null; }
                if (!expected.AcceptsNone) throw Bad(at, "expected " + expected + ", got NONE");
                actual = expected;
                return null;
            }
            if (expected != null && expected.Tag == Tag.Optional) expected = expected.Items[0];
            if (expected != null && expected.ValueTag != tag && !(expected.Tag == Tag.Int32Jagged && tag == Tag.List))
                throw Bad(at, "expected " + expected + " (tag " + (int)expected.ValueTag + "), got tag " + (int)tag);
            actual = expected;
            switch (tag)
            {
                case Tag.Bool: case Tag.Int32: case Tag.Int64: case Tag.Float32: case Tag.Float64: case Tag.Scalar:
                    return ReadNumber(s, ref pos, tag, expected, ref actual);
                case Tag.String: case Tag.Bytes: case Tag.Guid: case Tag.DateTime: case Tag.TimeSpan:
                    return ReadTextOrTime(s, ref pos, tag, ref actual);
                case Tag.Int32Array: case Tag.Int32Jagged: case Tag.Array: case Tag.NdArray:
                    return ReadArray(mem, s, ref pos, at, tag, expected, ref actual);
                case Tag.Tuple: return ReadTuple(mem, s, ref pos, expected, ref actual, depth);
                case Tag.List: return ReadList(mem, s, ref pos, at, expected, depth);
                case Tag.Dict: return ReadDict(mem, s, ref pos, at, expected, depth);
                case Tag.Record: return ReadRecord(mem, s, ref pos, at, expected, depth);
            }
            throw Bad(at, "unknown value tag 0x" + ((byte)tag).ToString("x2"));
        }

        /// <summary>BOOL, INT32, INT64, FLOAT32, FLOAT64 and SCALAR (a C# enum of an integer type too).</summary>
        static object ReadNumber(ReadOnlySpan<byte> s, ref int pos, Tag tag, WireType expected, ref WireType actual)
        {
            Type unused;
            switch (tag)
            {
                case Tag.Bool:
                {
                    Need(s, pos, 1, "BOOL");
                    byte b = s[pos++];
                    if (b > 1) throw Bad(pos - 1, "BOOL byte is " + b);
                    if (actual == null) actual = WireType.For(typeof(bool), false, out unused);
                    return b == 1;
                }
                case Tag.Int32:
                {
                    Need(s, pos, 4, "INT32");
                    int v = BinaryPrimitives.ReadInt32LittleEndian(s.Slice(pos));
                    pos += 4;
                    if (actual == null) actual = WireType.For(typeof(int), false, out unused);
                    return actual.IsEnum ? Enum.ToObject(actual.ClrType, v) : v;
                }
                case Tag.Int64:
                {
                    Need(s, pos, 8, "INT64");
                    long v = BinaryPrimitives.ReadInt64LittleEndian(s.Slice(pos));
                    pos += 8;
                    if (actual == null) actual = WireType.For(typeof(long), false, out unused);
                    return actual.IsEnum ? Enum.ToObject(actual.ClrType, v) : v;
                }
                case Tag.Float32:
                {
                    Need(s, pos, 4, "FLOAT32");
                    int bits = BinaryPrimitives.ReadInt32LittleEndian(s.Slice(pos));
                    pos += 4;
                    if (actual == null) actual = WireType.For(typeof(float), false, out unused);
                    return *(float*)&bits;
                }
                case Tag.Float64:
                {
                    Need(s, pos, 8, "FLOAT64");
                    long bits = BinaryPrimitives.ReadInt64LittleEndian(s.Slice(pos));
                    pos += 8;
                    if (actual == null) actual = WireType.For(typeof(double), false, out unused);
                    return BitConverter.Int64BitsToDouble(bits);
                }
                case Tag.Scalar:
                {
                    Need(s, pos, 1, "SCALAR dtype");
                    DType dt = DType.ForCode(s[pos]);
                    if (dt == null || (dt.Name != "int8" && dt.Name != "uint8" && dt.Name != "int16" && dt.Name != "uint16" && dt.Name != "uint32" && dt.Name != "uint64"))
                        throw Bad(pos, "SCALAR dtype code " + s[pos] + " is not int8, uint8, int16, uint16, uint32 or uint64");
                    if (expected != null && dt != expected.DType) throw Bad(pos, "expected " + expected + ", got a SCALAR " + dt.Name);
                    pos++;
                    Need(s, pos, dt.ItemSize, "SCALAR " + dt.Name);
                    ulong bits = 0;
                    for (int i = 0; i < dt.ItemSize; i++) bits |= (ulong)s[pos + i] << (8 * i);
                    pos += dt.ItemSize;
                    object v;
                    switch (dt.Name)
                    {
                        case "int8": v = (sbyte)bits; break;
                        case "uint8": v = (byte)bits; break;
                        case "int16": v = (short)bits; break;
                        case "uint16": v = (ushort)bits; break;
                        case "uint32": v = (uint)bits; break;
                        default: v = bits; break;
                    }
                    if (actual == null) actual = WireType.For(dt.ClrType, false, out unused);
                    return actual.IsEnum ? Enum.ToObject(actual.ClrType, v) : v;
                }
            }
            throw new InvalidOperationException("ReadNumber: tag " + tag);
        }

        /// <summary>STRING, BYTES, GUID, DATETIME and TIMESPAN.</summary>
        static object ReadTextOrTime(ReadOnlySpan<byte> s, ref int pos, Tag tag, ref WireType actual)
        {
            Type unused;
            switch (tag)
            {
                case Tag.String:
                {
                    if (actual == null) actual = WireType.For(typeof(string), false, out unused);
                    return ReadString(s, ref pos, "STRING");
                }
                case Tag.Bytes:
                {
                    Need(s, pos, 4, "BYTES length");
                    uint n = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(pos));
                    pos += 4;
                    Need(s, pos, n, "BYTES");
                    byte[] b = s.Slice(pos, (int)n).ToArray();
                    pos += (int)n;
                    if (actual == null) actual = WireType.For(typeof(byte[]), false, out unused);
                    return b;
                }
                case Tag.Guid:
                {
                    Need(s, pos, 16, "GUID");
                    Guid g = GuidFromRfc(s.Slice(pos, 16));
                    pos += 16;
                    if (actual == null) actual = WireType.For(typeof(Guid), false, out unused);
                    return g;
                }
                case Tag.DateTime:
                {
                    Need(s, pos, 9, "DATETIME");
                    long ticks = BinaryPrimitives.ReadInt64LittleEndian(s.Slice(pos));
                    byte kind = s[pos + 8];
                    if (ticks < 0 || ticks > MaxDateTimeTicks) throw Bad(pos, "DATETIME ticks " + ticks + " are outside DateTime's range");
                    if (kind > 1) throw Bad(pos + 8, "DATETIME kind " + kind + " is not 0 (unspecified) or 1 (UTC)");
                    pos += 9;
                    if (actual == null) actual = WireType.For(typeof(DateTime), false, out unused);
                    return new DateTime(ticks, kind == 1 ? DateTimeKind.Utc : DateTimeKind.Unspecified);
                }
                case Tag.TimeSpan:
                {
                    Need(s, pos, 8, "TIMESPAN");
                    long ticks = BinaryPrimitives.ReadInt64LittleEndian(s.Slice(pos));
                    pos += 8;
                    if (actual == null) actual = WireType.For(typeof(TimeSpan), false, out unused);
                    return new TimeSpan(ticks);
                }
            }
            throw new InvalidOperationException("ReadTextOrTime: tag " + tag);
        }

        /// <summary>INT32_ARRAY, INT32_JAGGED, ARRAY (copied into a C# array) and NDARRAY (a view of <paramref name="mem"/>, or a C# rectangular array).</summary>
        static object ReadArray(ReadOnlyMemory<byte> mem, ReadOnlySpan<byte> s, ref int pos, int at, Tag tag, WireType expected, ref WireType actual)
        {
            Type unused;
            switch (tag)
            {
                case Tag.Int32Array:
                {
                    if (actual == null) actual = WireType.For(typeof(int[]), false, out unused);
                    return ReadIntArray(s, ref pos);
                }
                case Tag.Int32Jagged:
                {
                    Need(s, pos, 4, "INT32_JAGGED rows");
                    uint rows = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(pos));
                    pos += 4;
                    Need(s, pos, rows * 8L, "INT32_JAGGED rows");      // every row takes at least 8 bytes: checked before allocating
                    var r = new int[rows][];
                    for (int i = 0; i < r.Length; i++) r[i] = ReadIntArray(s, ref pos);
                    if (actual == null) actual = WireType.For(typeof(int[][]), false, out unused);
                    return r;
                }
                case Tag.Array:
                {
                    Need(s, pos, 5, "ARRAY dtype and count");
                    DType dt = DType.ForCode(s[pos]);
                    if (dt == null || dt.ClrType == null) throw Bad(pos, "ARRAY dtype code " + s[pos] + " has no C# element type");
                    if (expected != null && dt != expected.DType) throw Bad(pos, "expected " + expected + ", got an ARRAY of " + dt.Name);
                    uint n = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(pos + 1));
                    int start = (int)Pad(pos + 5, 8);
                    long len = (long)n * dt.ItemSize;
                    Need(s, start, Pad(start + len, 8) - start, "ARRAY of " + n + " " + dt.Name);
                    pos = (int)Pad(start + len, 8);
                    if (actual == null) actual = WireType.For(dt.ClrType.MakeArrayType(), false, out unused);
                    return ToArray(s.Slice(start, (int)len), dt.ClrType, dt, null, start);
                }
                case Tag.NdArray:
                {
                    DType dt;
                    int[] shape;
                    long count;
                    ReadShape(s, ref pos, out dt, out shape, out count);
                    int start = (int)Pad(pos, Wire.NdArrayAlign);
                    long len = count * dt.ItemSize;
                    Need(s, start, len, "NDARRAY data");
                    pos = start + (int)len;
                    if (expected != null && expected.Tag == Tag.RectArray)
                    {
                        if (dt != expected.DType || shape.Length != expected.Rank)
                            throw Bad(at, "expected " + expected + ", got an NDARRAY of " + dt.Name + " with " + shape.Length + " dimension(s)");
                        return ToArray(s.Slice(start, (int)len), expected.ClrType.GetElementType(), dt, shape, start);
                    }
                    if (actual == null) actual = WireType.For(typeof(NdArray), false, out unused);
                    // a view over the mapping when the caller gave one (it expires with the next call), else a copy
                    ReadOnlyMemory<byte> data = mem.Length >= s.Length ? mem.Slice(start, (int)len) : new ReadOnlyMemory<byte>(s.Slice(start, (int)len).ToArray());
                    return new NdArray(dt, shape, data);
                }
            }
            throw new InvalidOperationException("ReadArray: tag " + tag);
        }

        /// <summary>TUPLE: its items, each read against the declared item type (any type when none is declared).</summary>
        static object ReadTuple(ReadOnlyMemory<byte> mem, ReadOnlySpan<byte> s, ref int pos, WireType expected, ref WireType actual, int depth)
        {
            Need(s, pos, 1, "TUPLE count");
            int n = s[pos++];
            if (n < 1 || n > MaxTuple) throw Bad(pos - 1, "TUPLE count " + n + " is not 1.." + MaxTuple);
            if (expected != null && n != expected.Items.Length)
                throw Bad(pos - 1, "expected " + expected + " (" + expected.Items.Length + " items), got a tuple of " + n);
            var values = new object[n];
            var types = new WireType[n];
            for (int i = 0; i < n; i++)
                values[i] = Read(mem, s, ref pos, expected == null ? null : expected.Items[i], out types[i], depth + 1);
            if (actual == null) actual = WireType.TupleOf(types);
            return actual.MakeTuple(values);
        }

        /// <summary>LIST: a declared List&lt;T&gt; or T[] (or an int[][] with null rows).</summary>
        static object ReadList(ReadOnlyMemory<byte> mem, ReadOnlySpan<byte> s, ref int pos, int at, WireType expected, int depth)
        {
            if (expected == null) throw Bad(at, "a LIST needs a declared C# type");
            if (expected.Tag == Tag.Int32Jagged)
            {
                // int[][] with null rows: a LIST of INT32_ARRAY or NONE values (see Measure)
                Need(s, pos, 4, "LIST count");
                uint rows = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(pos));
                pos += 4;
                Need(s, pos, rows, "LIST of " + rows + " int[] rows");
                var r = new int[rows][];
                for (int i = 0; i < r.Length; i++)
                {
                    Need(s, pos, 1, "a value tag");
                    if (s[pos] == (byte)Tag.None) { pos++; continue; }
                    if (s[pos] != (byte)Tag.Int32Array) throw Bad(pos, "expected an int[] row (INT32_ARRAY or NONE), got tag " + s[pos]);
                    pos++;
                    r[i] = ReadIntArray(s, ref pos);
                }
                return r;
            }
            Need(s, pos, 4, "LIST count");
            uint n = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(pos));
            pos += 4;
            Need(s, pos, n, "LIST of " + n + " values");       // every value takes at least one byte: checked before allocating
            object list = expected.Lists.Create((int)n);
            WireType unusedType;
            for (int i = 0; i < (int)n; i++)
                expected.Lists.Set(list, i, Read(mem, s, ref pos, expected.Items[0], out unusedType, depth + 1));
            return list;
        }

        /// <summary>DICT: a declared Dictionary&lt;string, T&gt;.</summary>
        static object ReadDict(ReadOnlyMemory<byte> mem, ReadOnlySpan<byte> s, ref int pos, int at, WireType expected, int depth)
        {
            if (expected == null) throw Bad(at, "a DICT needs a declared C# type");
            Need(s, pos, 4, "DICT count");
            uint n = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(pos));
            pos += 4;
            Need(s, pos, n * 5L, "DICT of " + n + " entries");
            object dict = expected.Dicts.Create((int)n);
            WireType unusedType;
            for (int i = 0; i < (int)n; i++)
            {
                int keyAt = pos;
                string key = ReadString(s, ref pos, "DICT key");
                object value = Read(mem, s, ref pos, expected.Items[0], out unusedType, depth + 1);
                if (!expected.Dicts.Add(dict, key, value)) throw Bad(keyAt, "DICT key \"" + key + "\" appears twice");
            }
            return dict;
        }

        /// <summary>RECORD: a declared class or struct, its fields matched by name.</summary>
        static object ReadRecord(ReadOnlyMemory<byte> mem, ReadOnlySpan<byte> s, ref int pos, int at, WireType expected, int depth)
        {
            if (expected == null) throw Bad(at, "a RECORD needs a declared C# type");
            Need(s, pos, 2, "RECORD field count");
            int n = BinaryPrimitives.ReadUInt16LittleEndian(s.Slice(pos));
            pos += 2;
            if (n != expected.Items.Length)
                throw Bad(at, "expected " + expected + " with " + expected.Items.Length + " fields, got a RECORD of " + n);
            var values = new object[n];
            var seen = new bool[n];
            WireType unusedType;
            for (int i = 0; i < n; i++)
            {
                int nameAt = pos;
                Need(s, pos, 1, "RECORD field name length");
                int len = s[pos++];
                Need(s, pos, len, "RECORD field name");
                string name;
                try { name = Utf8.GetString(s.Slice(pos, len).ToArray()); }
                catch (DecoderFallbackException) { throw Bad(pos, "RECORD field name is not valid UTF-8"); }
                pos += len;
                int k = expected.FieldIndex(name);
                if (k < 0) throw Bad(nameAt, expected + " has no member for the field \"" + name + "\"");
                if (seen[k]) throw Bad(nameAt, "RECORD field \"" + name + "\" appears twice");
                seen[k] = true;
                values[k] = Read(mem, s, ref pos, expected.Items[k], out unusedType, depth + 1);
            }
            return expected.MakeRecord(values);
        }

        /// <summary>
        /// An NDARRAY_IN_REQUEST reply (PROTOCOL.md section 7): the array's dtype and shape, and where its data lies in the
        /// request payload of <paramref name="requestLength"/> bytes that it answers (checked).
        /// </summary>
        internal static void ReadInRequest(ReadOnlySpan<byte> s, int requestLength, out DType dt, out int[] shape, out int offset, out int length)
        {
            int pos = 1;
            long count;
            ReadShape(s, ref pos, out dt, out shape, out count);
            pos = (int)Pad(pos, 8);
            Need(s, pos, 8, "NDARRAY_IN_REQUEST offset");
            ulong at = BinaryPrimitives.ReadUInt64LittleEndian(s.Slice(pos));
            if (pos + 8 != s.Length) throw Bad(pos + 8, (s.Length - pos - 8) + " bytes after the NDARRAY_IN_REQUEST reply");
            long len = count * dt.ItemSize;
            if (at > (ulong)requestLength || len > requestLength - (long)at)
                throw Bad(pos, "NDARRAY_IN_REQUEST data of " + len + " bytes at offset " + at + " lies beyond the " + requestLength + "-byte request");
            offset = (int)at;
            length = (int)len;
        }

        static void ReadShape(ReadOnlySpan<byte> s, ref int pos, out DType dt, out int[] shape, out long count)
        {
            Need(s, pos, 2, "NDARRAY dtype and ndim");
            dt = DType.ForCode(s[pos]);
            if (dt == null) throw Bad(pos, "unknown dtype code " + s[pos]);
            int ndim = s[pos + 1];
            if (ndim > MaxDims) throw Bad(pos + 1, "ndim " + ndim + " is over " + MaxDims);
            pos += 2;
            Need(s, pos, 8L * ndim, "NDARRAY shape");
            shape = new int[ndim];
            count = 1;
            for (int i = 0; i < ndim; i++, pos += 8)
            {
                ulong d = BinaryPrimitives.ReadUInt64LittleEndian(s.Slice(pos));
                if (d > int.MaxValue) throw Bad(pos, "dimension " + d + " does not fit in an int");
                shape[i] = (int)d;
                count = count == 0 || d == 0 ? 0 : count * (long)d;
                if (count > int.MaxValue) throw Bad(pos, "the array has more than int.MaxValue elements");
            }
        }

        /// <summary>A new C# array (1-D when <paramref name="shape"/> is null, else rectangular) holding a copy of <paramref name="data"/>.</summary>
        static Array ToArray(ReadOnlySpan<byte> data, Type element, DType dt, int[] shape, int at)
        {
            if (dt.Name == "bool")
                for (int i = 0; i < data.Length; i++)
                    if (data[i] > 1) throw Bad(at + i, "a bool element is " + data[i] + ", not 0 or 1");
            Array a = shape == null ? Array.CreateInstance(element, data.Length / dt.ItemSize) : Array.CreateInstance(element, shape);
            if (data.Length == 0) return a;
            GCHandle h = GCHandle.Alloc(a, GCHandleType.Pinned);
            try
            {
                fixed (byte* src = &MemoryMarshal.GetReference(data))
                    Buffer.MemoryCopy(src, (void*)h.AddrOfPinnedObject(), data.Length, data.Length);
            }
            finally { h.Free(); }
            return a;
        }

        static string ReadString(ReadOnlySpan<byte> s, ref int pos, string what)
        {
            Need(s, pos, 4, what + " length");
            uint n = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(pos));
            pos += 4;
            Need(s, pos, n, what);
            if (n == 0) return "";
            try
            {
                fixed (byte* p = &MemoryMarshal.GetReference(s.Slice(pos)))
                {
                    string r = Utf8.GetString(p, (int)n);
                    pos += (int)n;
                    return r;
                }
            }
            catch (DecoderFallbackException)
            {
                throw Bad(pos, what + " is not valid UTF-8");
            }
        }

        static int[] ReadIntArray(ReadOnlySpan<byte> s, ref int pos)
        {
            Need(s, pos, 4, "INT32_ARRAY count");
            uint n = BinaryPrimitives.ReadUInt32LittleEndian(s.Slice(pos));
            int start = (int)Pad(pos + 4, 8);
            Need(s, start, n * 4L, "INT32_ARRAY");
            var a = new int[n];
            if (n > 0) MemoryMarshal.Cast<byte, int>(s.Slice(start, (int)n * 4)).CopyTo(a);
            long end = Pad(start + n * 4L, 8);
            Need(s, start, end - start, "INT32_ARRAY padding");
            pos = (int)end;
            return a;
        }

        /// <summary>Decodes an error reply payload (status 1).</summary>
        public static ErrorFrame ReadError(ReadOnlySpan<byte> s)
        {
            int pos = 0;
            Need(s, pos, 1, "error kind");
            var e = new ErrorFrame();
            e.Kind = s[pos++];
            e.PythonType = ReadString(s, ref pos, "error type name");
            e.Message = ReadString(s, ref pos, "error message");
            e.Traceback = ReadString(s, ref pos, "error traceback");
            return e;
        }
    }
}
