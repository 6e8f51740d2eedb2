using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Runtime.InteropServices;
using System.Text;

namespace LessPy
{
    /// <summary>
    /// Values to bytes and back, over spans: no I/O (measuring and call frames here, writing values in Codec.Write.cs,
    /// decoding in Codec.Read.cs). Encoding is two passes, <c>Measure*</c> then <c>Write*</c>, so a
    /// frame's size is known before a byte is written. Decoding checks every length against the buffer before it
    /// allocates. Positions are offsets from the start of the payload (padding is measured from there).
    /// </summary>
    internal static unsafe partial class Codec
    {
        internal const int MaxNameBytes = 1024;
        internal const int MaxDims = 32;
        internal const int MaxDepth = 32;
        /// <summary>The most items of a TUPLE: a ValueTuple's own limit (an eighth item is a nested tuple).</summary>
        internal const int MaxTuple = 7;
        /// <summary>The most fields of a RECORD.</summary>
        internal const int MaxFields = 1024;
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
                    return Pad(pos + 3 + 8L * nd.Rank, Wire.NdArrayAlign) + (long)nd.Length * nd.ElementSize;
                }
                case Tag.Array:
                    return Pad(Pad(pos + 6, 8) + (long)((Array)v).Length * t.DType.ItemSize, 8);
                case Tag.RectArray:
                {
                    var a = (Array)v;
                    return Pad(pos + 3 + 8L * a.Rank, Wire.NdArrayAlign) + (long)a.LongLength * t.DType.ItemSize;
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

        // ---------------------------------------------------------------- NDARRAY_AT (an in-place request array)
        // u8 tag 0x0C, u8 dtype, u8 ndim, ndim x u64 shape, zero padding to a multiple of 8,
        // u64 offset of the data from the payload start (a multiple of Wire.NdArrayAlign). The data is already in the request file.

        static long MeasureNdArrayAt(NdArray nd, long pos)
        {
            return Pad(pos + 3 + 8L * nd.Rank, 8) + 8;
        }

        // ---------------------------------------------------------------- call frames (PROTOCOL.md section 6)

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
