using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace LessPy
{
    /// <summary>
    /// Values to bytes and back, over spans: no I/O (encoding here, decoding in Codec.Read.cs). Encoding is two passes, <c>Measure*</c> then <c>Write*</c>, so a
    /// frame's size is known before a byte is written. Decoding checks every length against the buffer before it
    /// allocates. Positions are offsets from the start of the payload (padding is measured from there).
    /// </summary>
    internal static unsafe partial class Codec
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
    }
}
