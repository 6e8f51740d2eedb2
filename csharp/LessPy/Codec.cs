using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace LessPy
{
    /// <summary>
    /// Values to bytes and back, over spans: no I/O. Encoding is two passes, <c>Measure*</c> then <c>Write*</c>, so a
    /// frame's size is known before a byte is written. Decoding checks every length against the buffer before it
    /// allocates. Positions are offsets from the start of the payload (padding is measured from there).
    /// </summary>
    internal static unsafe class Codec
    {
        internal const int MaxNameBytes = 1024;
        internal const int MaxDims = 32;
        internal const int MaxDepth = 32;
        internal const long MaxDateTimeTicks = 3155378975999999999L;     // DateTime.MaxValue.Ticks
        static readonly UTF8Encoding Utf8 = new UTF8Encoding(false, true);

        static long Pad(long pos, int to) { return (pos + to - 1) / to * to; }

        // ---------------------------------------------------------------- encoding

        /// <summary>The position just after <paramref name="v"/> encoded at <paramref name="pos"/>.</summary>
        public static long Measure(object v, WireType t, long pos)
        {
            if (v == null) return pos + 1;
            if (t.Tag == Tag.Optional) t = t.Items[0];
            switch (t.Tag)
            {
                case Tag.None: return pos + 1;
                case Tag.Bool: return pos + 2;
                case Tag.Int32: case Tag.Float32: return pos + 5;
                case Tag.Int64: case Tag.Float64: case Tag.TimeSpan: return pos + 9;
                case Tag.DateTime: return pos + 10;
                case Tag.Guid: return pos + 17;
                case Tag.Scalar: return pos + 2 + t.DType.ItemSize;
                case Tag.String: return pos + 5 + Utf8.GetByteCount((string)v);
                case Tag.Bytes: return pos + 5 + ((byte[])v).Length;
                case Tag.Int32Array: return MeasureIntArray((int[])v, pos + 1);
                case Tag.Int32Jagged:
                {
                    // INT32_JAGGED has no null row: with one, the rows go as a LIST of INT32_ARRAY or NONE values (PROTOCOL.md
                    // section 4: a LIST carries any values, and a null array is NONE), which Python reads as a list with None
                    var rows = (int[][])v;
                    bool nulls = HasNullRow(rows);
                    long p = pos + 5;
                    for (int i = 0; i < rows.Length; i++)
                        p = nulls ? (rows[i] == null ? p + 1 : MeasureIntArray(rows[i], p + 1)) : MeasureIntArray(rows[i], p);
                    return p;
                }
                case Tag.Tuple:
                {
                    long p = pos + 2;
                    for (int i = 0; i < t.Items.Length; i++) p = Measure(t.GetItem(v, i), t.Items[i], p);
                    return p;
                }
                case Tag.NdArray:
                {
                    var nd = (NdArray)v;
                    if (nd.IsRequestArray) return MeasureNdArrayAt(nd, pos);
                    return Pad(pos + 3 + 8L * nd.Rank, 64) + (long)nd.Length * nd.ElementSize;
                }
                case Tag.Array:
                    return Pad(Pad(pos + 6, 8) + (long)((Array)v).Length * t.DType.ItemSize, 8);
                case Tag.RectArray:
                {
                    var a = (Array)v;
                    return Pad(pos + 3 + 8L * a.Rank, 64) + (long)a.LongLength * t.DType.ItemSize;
                }
                case Tag.List:
                {
                    int n = t.Lists.Count(v);
                    long p = pos + 5;
                    for (int i = 0; i < n; i++) p = Measure(t.Lists.Get(v, i), t.Items[0], p);
                    return p;
                }
                case Tag.Dict:
                {
                    long p = pos + 5;
                    foreach (KeyValuePair<string, object> kv in t.Dicts.Pairs(v))
                        p = Measure(kv.Value, t.Items[0], p + 4 + Utf8.GetByteCount(kv.Key));
                    return p;
                }
                case Tag.Record:
                {
                    long p = pos + 3;
                    for (int i = 0; i < t.Items.Length; i++)
                        p = Measure(t.GetField(v, i), t.Items[i], p + 1 + Utf8.GetByteCount(t.Names[i]));
                    return p;
                }
            }
            throw new ArgumentException("no encoding for " + t);
        }

        static bool HasNullRow(int[][] rows)
        {
            for (int i = 0; i < rows.Length; i++)
                if (rows[i] == null) return true;
            return false;
        }

        static long MeasureIntArray(int[] a, long pos)
        {
            int n = a == null ? 0 : a.Length;
            return Pad(Pad(pos + 4, 8) + 4L * n, 8);
        }

        /// <summary>Writes <paramref name="v"/> at <paramref name="pos"/>; the buffer must hold what <see cref="Measure"/> said.</summary>
        public static int Write(Span<byte> buf, int pos, object v, WireType t)
        {
            if (v == null || t.Tag == Tag.None)
            {
                buf[pos] = (byte)Tag.None;
                return pos + 1;
            }
            if (t.Tag == Tag.Optional) t = t.Items[0];
            if (t.Tag == Tag.NdArray && ((NdArray)v).IsRequestArray) return WriteNdArrayAt(buf, pos, (NdArray)v);
            buf[pos++] = (byte)t.ValueTag;
            switch (t.Tag)
            {
                case Tag.Bool:
                    buf[pos] = (bool)v ? (byte)1 : (byte)0;
                    return pos + 1;
                case Tag.Int32:
                    BinaryPrimitives.WriteInt32LittleEndian(buf.Slice(pos), t.IsEnum ? Convert.ToInt32(v) : (int)v);
                    return pos + 4;
                case Tag.Int64:
                    BinaryPrimitives.WriteInt64LittleEndian(buf.Slice(pos), t.IsEnum ? Convert.ToInt64(v) : (long)v);
                    return pos + 8;
                case Tag.Float32:
                {
                    float f = (float)v;
                    BinaryPrimitives.WriteInt32LittleEndian(buf.Slice(pos), *(int*)&f);
                    return pos + 4;
                }
                case Tag.Float64:
                    BinaryPrimitives.WriteInt64LittleEndian(buf.Slice(pos), BitConverter.DoubleToInt64Bits((double)v));
                    return pos + 8;
                case Tag.String:
                    return WriteString(buf, pos, (string)v, 4);
                case Tag.Bytes:
                {
                    var b = (byte[])v;
                    BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)b.Length);
                    CopyBytes(new ReadOnlySpan<byte>(b), buf, pos + 4);
                    return pos + 4 + b.Length;
                }
                case Tag.Int32Array:
                    return WriteIntArray(buf, pos, (int[])v);
                case Tag.Int32Jagged:
                {
                    var rows = (int[][])v;
                    bool nulls = HasNullRow(rows);
                    if (nulls) buf[pos - 1] = (byte)Tag.List;           // see Measure
                    BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)rows.Length);
                    pos += 4;
                    for (int i = 0; i < rows.Length; i++)
                    {
                        if (!nulls) pos = WriteIntArray(buf, pos, rows[i]);
                        else if (rows[i] == null) buf[pos++] = (byte)Tag.None;
                        else
                        {
                            buf[pos] = (byte)Tag.Int32Array;
                            pos = WriteIntArray(buf, pos + 1, rows[i]);
                        }
                    }
                    return pos;
                }
                case Tag.Tuple:
                    buf[pos++] = (byte)t.Items.Length;
                    for (int i = 0; i < t.Items.Length; i++) pos = Write(buf, pos, t.GetItem(v, i), t.Items[i]);
                    return pos;
                case Tag.NdArray:
                    return WriteNdArray(buf, pos, (NdArray)v);
                case Tag.Array:
                {
                    var a = (Array)v;
                    buf[pos] = t.DType.Code;
                    BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos + 1), (uint)a.Length);
                    int start = (int)Pad(pos + 5, 8);
                    buf.Slice(pos + 5, start - pos - 5).Clear();
                    int end = start + CopyArray(a, t.DType, buf, start);
                    int padded = (int)Pad(end, 8);
                    buf.Slice(end, padded - end).Clear();
                    return padded;
                }
                case Tag.RectArray:
                {
                    var a = (Array)v;
                    buf[pos++] = t.DType.Code;
                    buf[pos++] = (byte)a.Rank;
                    for (int i = 0; i < a.Rank; i++, pos += 8)
                        BinaryPrimitives.WriteUInt64LittleEndian(buf.Slice(pos), (ulong)a.GetLength(i));
                    int start = (int)Pad(pos, 64);
                    buf.Slice(pos, start - pos).Clear();
                    return start + CopyArray(a, t.DType, buf, start);
                }
                case Tag.Scalar:
                {
                    buf[pos++] = t.DType.Code;
                    bool signed = t.DType.Name[0] == 'i';
                    ulong bits = signed ? (ulong)Convert.ToInt64(v) : Convert.ToUInt64(v);
                    for (int i = 0; i < t.DType.ItemSize; i++) buf[pos + i] = (byte)(bits >> (8 * i));
                    return pos + t.DType.ItemSize;
                }
                case Tag.DateTime:
                {
                    var d = (DateTime)v;
                    if (d.Kind == DateTimeKind.Local) d = d.ToUniversalTime();     // Local is sent as the same instant in UTC
                    BinaryPrimitives.WriteInt64LittleEndian(buf.Slice(pos), d.Ticks);
                    buf[pos + 8] = d.Kind == DateTimeKind.Utc ? (byte)1 : (byte)0;
                    return pos + 9;
                }
                case Tag.TimeSpan:
                    BinaryPrimitives.WriteInt64LittleEndian(buf.Slice(pos), ((TimeSpan)v).Ticks);
                    return pos + 8;
                case Tag.Guid:
                    GuidToRfc((Guid)v, buf.Slice(pos, 16));
                    return pos + 16;
                case Tag.List:
                {
                    int n = t.Lists.Count(v);
                    BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)n);
                    pos += 4;
                    for (int i = 0; i < n; i++) pos = Write(buf, pos, t.Lists.Get(v, i), t.Items[0]);
                    return pos;
                }
                case Tag.Dict:
                {
                    BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)t.Dicts.Count(v));
                    pos += 4;
                    foreach (KeyValuePair<string, object> kv in t.Dicts.Pairs(v))
                        pos = Write(buf, WriteString(buf, pos, kv.Key, 4), kv.Value, t.Items[0]);
                    return pos;
                }
                case Tag.Record:
                {
                    BinaryPrimitives.WriteUInt16LittleEndian(buf.Slice(pos), (ushort)t.Items.Length);
                    pos += 2;
                    for (int i = 0; i < t.Items.Length; i++)
                        pos = Write(buf, WriteString(buf, pos, t.Names[i], 1), t.GetField(v, i), t.Items[i]);
                    return pos;
                }
            }
            throw new ArgumentException("no encoding for " + t);
        }

        /// <summary>A length (u32 or u8) then UTF-8.</summary>
        static int WriteString(Span<byte> buf, int pos, string s, int lengthBytes)
        {
            int n = 0;
            Span<byte> dst = buf.Slice(pos + lengthBytes);
            if (s.Length > 0)
            {
                fixed (char* c = s)
                fixed (byte* d = &MemoryMarshal.GetReference(dst))
                    n = Utf8.GetBytes(c, s.Length, d, dst.Length);
            }
            if (lengthBytes == 4) BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)n);
            else buf[pos] = (byte)n;
            return pos + lengthBytes + n;
        }

        /// <summary>Copies a primitive array's bytes (any rank) to <paramref name="pos"/>; returns how many.</summary>
        static int CopyArray(Array a, DType dt, Span<byte> buf, int pos)
        {
            long len = a.LongLength * dt.ItemSize;
            if (len == 0) return 0;
            GCHandle h = GCHandle.Alloc(a, GCHandleType.Pinned);
            try
            {
                fixed (byte* d = &buf[pos])
                    Buffer.MemoryCopy((void*)h.AddrOfPinnedObject(), d, buf.Length - pos, len);
            }
            finally { h.Free(); }
            return (int)len;
        }

        /// <summary>.NET keeps a Guid's first three fields little-endian; the wire carries RFC 4122 (big-endian) order.</summary>
        static void GuidToRfc(Guid g, Span<byte> dst)
        {
            byte[] b = g.ToByteArray();
            dst[0] = b[3]; dst[1] = b[2]; dst[2] = b[1]; dst[3] = b[0];
            dst[4] = b[5]; dst[5] = b[4];
            dst[6] = b[7]; dst[7] = b[6];
            for (int i = 8; i < 16; i++) dst[i] = b[i];
        }

        static Guid GuidFromRfc(ReadOnlySpan<byte> s)
        {
            var b = new byte[16];
            b[0] = s[3]; b[1] = s[2]; b[2] = s[1]; b[3] = s[0];
            b[4] = s[5]; b[5] = s[4];
            b[6] = s[7]; b[7] = s[6];
            for (int i = 8; i < 16; i++) b[i] = s[i];
            return new Guid(b);
        }

        static int WriteIntArray(Span<byte> buf, int pos, int[] a)
        {
            int n = a == null ? 0 : a.Length;
            BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)n);
            int start = (int)Pad(pos + 4, 8);
            buf.Slice(pos + 4, start - pos - 4).Clear();
            if (n > 0) CopyBytes(MemoryMarshal.AsBytes(new ReadOnlySpan<int>(a)), buf, start);
            int end = start + 4 * n;
            int padded = (int)Pad(end, 8);
            buf.Slice(end, padded - end).Clear();
            return padded;
        }

        static int WriteNdArray(Span<byte> buf, int pos, NdArray nd)
        {
            int[] shape = nd.ShapeNoCopy;
            buf[pos++] = nd.DType.Code;
            buf[pos++] = (byte)shape.Length;
            for (int i = 0; i < shape.Length; i++, pos += 8)
                BinaryPrimitives.WriteUInt64LittleEndian(buf.Slice(pos), (ulong)shape[i]);
            int start = (int)Pad(pos, 64);
            buf.Slice(pos, start - pos).Clear();
            int len = nd.Length * nd.ElementSize;
            if (len > 0)
            {
                // the hot path: one copy from the pinned source straight into the destination (the request mapping)
                using (var h = nd.DataMemory.Pin())
                fixed (byte* d = &buf[start])
                    Buffer.MemoryCopy(h.Pointer, d, buf.Length - start, len);
            }
            return start + len;
        }

        // ---------------------------------------------------------------- NDARRAY_AT (an in-place request array)
        // u8 tag 0x0C, u8 dtype, u8 ndim, ndim x u64 shape, zero padding to a multiple of 8,
        // u64 offset of the data from the payload start (a multiple of 64). The data is already in the request file.

        static long MeasureNdArrayAt(NdArray nd, long pos)
        {
            return Pad(pos + 3 + 8L * nd.Rank, 8) + 8;
        }

        static int WriteNdArrayAt(Span<byte> buf, int pos, NdArray nd)
        {
            nd.RequestArrays.Claim(nd.RequestGeneration, nd.RequestOffset + (long)nd.Length * nd.ElementSize);
            int[] shape = nd.ShapeNoCopy;
            buf[pos++] = (byte)Tag.NdArrayAt;
            buf[pos++] = nd.DType.Code;
            buf[pos++] = (byte)shape.Length;
            for (int i = 0; i < shape.Length; i++, pos += 8)
                BinaryPrimitives.WriteUInt64LittleEndian(buf.Slice(pos), (ulong)shape[i]);
            int start = (int)Pad(pos, 8);
            buf.Slice(pos, start - pos).Clear();
            BinaryPrimitives.WriteUInt64LittleEndian(buf.Slice(start), (ulong)nd.RequestOffset);
            return start + 8;
        }

        // ----------------------------------------------------------------

        static void CopyBytes(ReadOnlySpan<byte> src, Span<byte> buf, int pos)
        {
            if (src.Length == 0) return;
            fixed (byte* s = &MemoryMarshal.GetReference(src))
            fixed (byte* d = &buf[pos])
                Buffer.MemoryCopy(s, d, buf.Length - pos, src.Length);
        }

        /// <summary>The size of a call frame (PROTOCOL.md section 6).</summary>
        public static long MeasureCall(byte[] name, byte[] descriptor, object[] args, WireType[] argTypes)
        {
            return MeasureCall(name, descriptor, args, argTypes, null);
        }

        /// <summary>
        /// As <see cref="MeasureCall(byte[], byte[], object[], WireType[])"/>; a string argument UTF-8 cannot carry (a lone
        /// UTF-16 surrogate) is an <see cref="ArgumentMismatchException"/> naming the parameter (<paramref name="argNames"/>)
        /// and the index of the surrogate, before anything is written.
        /// </summary>
        public static long MeasureCall(byte[] name, byte[] descriptor, object[] args, WireType[] argTypes, string[] argNames)
        {
            long p = 2 + name.Length + descriptor.Length + 1;
            for (int i = 0; i < argTypes.Length; i++)
            {
                try { p = Measure(args[i], argTypes[i], p); }
                catch (EncoderFallbackException e)
                {
                    string param = argNames != null && i < argNames.Length ? "parameter " + argNames[i] : "argument " + (i + 1);
                    bool nested = argTypes[i].Tag != Tag.String && !(argTypes[i].Tag == Tag.Optional && argTypes[i].Items[0].Tag == Tag.String);
                    string unit = e.CharUnknown != '\0' ? "\\u" + ((int)e.CharUnknown).ToString("X4")
                        : "\\u" + ((int)e.CharUnknownHigh).ToString("X4") + "\\u" + ((int)e.CharUnknownLow).ToString("X4");
                    throw new ArgumentMismatchException((nested ? "a string inside " + param : param) + " of " + Encoding.UTF8.GetString(name)
                        + " holds a lone UTF-16 surrogate " + unit + " at index " + e.Index + ", which UTF-8 (the wire's encoding) cannot "
                        + "carry and Python cannot hold in a str: pair it, or remove or replace it (for example with \\uFFFD) before the call");
                }
            }
            return p;
        }

        /// <summary>Writes a call frame; returns its length. Measure it first.</summary>
        public static int WriteCall(Span<byte> buf, byte[] name, byte[] descriptor, object[] args, WireType[] argTypes)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(buf, (ushort)name.Length);
            int pos = 2;
            new ReadOnlySpan<byte>(name).CopyTo(buf.Slice(pos));
            pos += name.Length;
            new ReadOnlySpan<byte>(descriptor).CopyTo(buf.Slice(pos));
            pos += descriptor.Length;
            buf[pos++] = (byte)argTypes.Length;
            for (int i = 0; i < argTypes.Length; i++) pos = Write(buf, pos, args[i], argTypes[i]);
            return pos;
        }

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
            Type unused;
            actual = expected;
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
                case Tag.Tuple:
                {
                    Need(s, pos, 1, "TUPLE count");
                    int n = s[pos++];
                    if (n < 1 || n > 7) throw Bad(pos - 1, "TUPLE count " + n + " is not 1..7");
                    if (expected != null && n != expected.Items.Length)
                        throw Bad(pos - 1, "expected " + expected + " (" + expected.Items.Length + " items), got a tuple of " + n);
                    var values = new object[n];
                    var types = new WireType[n];
                    for (int i = 0; i < n; i++)
                        values[i] = Read(mem, s, ref pos, expected == null ? null : expected.Items[i], out types[i], depth + 1);
                    if (actual == null) actual = WireType.TupleOf(types);
                    return actual.MakeTuple(values);
                }
                case Tag.NdArray:
                {
                    DType dt;
                    int[] shape;
                    long count;
                    ReadShape(s, ref pos, out dt, out shape, out count);
                    int start = (int)Pad(pos, 64);
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
                case Tag.Guid:
                {
                    Need(s, pos, 16, "GUID");
                    Guid g = GuidFromRfc(s.Slice(pos, 16));
                    pos += 16;
                    if (actual == null) actual = WireType.For(typeof(Guid), false, out unused);
                    return g;
                }
                case Tag.List:
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
                case Tag.Dict:
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
                case Tag.Record:
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
            }
            throw Bad(at, "unknown value tag 0x" + ((byte)tag).ToString("x2"));
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
