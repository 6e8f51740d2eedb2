using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Runtime.InteropServices;

namespace LessPy
{
    internal static unsafe partial class Codec
    {
        // ---------------------------------------------------------------- writing values

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
                case Tag.Bool: case Tag.Int32: case Tag.Int64: case Tag.Float32: case Tag.Float64: case Tag.Scalar:
                    return WriteNumber(buf, pos, v, t);
                case Tag.String: case Tag.Bytes: case Tag.Guid: case Tag.DateTime: case Tag.TimeSpan:
                    return WriteTextOrTime(buf, pos, v, t);
                case Tag.Int32Array: case Tag.Int32Jagged: case Tag.Array: case Tag.RectArray: case Tag.NdArray:
                    return WriteArray(buf, pos, v, t);
                case Tag.Tuple: return WriteTuple(buf, pos, v, t);
                case Tag.List: return WriteList(buf, pos, v, t);
                case Tag.Dict: return WriteDict(buf, pos, v, t);
                case Tag.Record: return WriteRecord(buf, pos, v, t);
            }
            throw new ArgumentException("no encoding for " + t);
        }

        /// <summary>BOOL, INT32, INT64, FLOAT32, FLOAT64 (a C# enum as its integer) and SCALAR, after the tag.</summary>
        static int WriteNumber(Span<byte> buf, int pos, object v, WireType t)
        {
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
                case Tag.Scalar:
                {
                    buf[pos++] = t.DType.Code;
                    bool signed = t.DType.Name[0] == 'i';
                    ulong bits = signed ? (ulong)Convert.ToInt64(v) : Convert.ToUInt64(v);
                    for (int i = 0; i < t.DType.ItemSize; i++) buf[pos + i] = (byte)(bits >> (8 * i));
                    return pos + t.DType.ItemSize;
                }
            }
            throw new InvalidOperationException("WriteNumber: tag " + t.Tag);
        }

        /// <summary>STRING, BYTES, GUID, DATETIME and TIMESPAN, after the tag.</summary>
        static int WriteTextOrTime(Span<byte> buf, int pos, object v, WireType t)
        {
            switch (t.Tag)
            {
                case Tag.String:
                    return WriteString(buf, pos, (string)v, 4);
                case Tag.Bytes:
                {
                    var b = (byte[])v;
                    BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)b.Length);
                    CopyBytes(new ReadOnlySpan<byte>(b), buf, pos + 4);
                    return pos + 4 + b.Length;
                }
                case Tag.Guid:
                    GuidToRfc((Guid)v, buf.Slice(pos, 16));
                    return pos + 16;
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
            }
            throw new InvalidOperationException("WriteTextOrTime: tag " + t.Tag);
        }

        /// <summary>INT32_ARRAY, INT32_JAGGED (or, with a null row, a LIST in its place), ARRAY, a rectangular array and NDARRAY, after the tag.</summary>
        static int WriteArray(Span<byte> buf, int pos, object v, WireType t)
        {
            switch (t.Tag)
            {
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
                    int start = (int)Pad(pos, Wire.NdArrayAlign);
                    buf.Slice(pos, start - pos).Clear();
                    return start + CopyArray(a, t.DType, buf, start);
                }
                case Tag.NdArray:
                    return WriteNdArray(buf, pos, (NdArray)v);
            }
            throw new InvalidOperationException("WriteArray: tag " + t.Tag);
        }

        /// <summary>TUPLE: its count, then each item as its declared type.</summary>
        static int WriteTuple(Span<byte> buf, int pos, object v, WireType t)
        {
            buf[pos++] = (byte)t.Items.Length;
            for (int i = 0; i < t.Items.Length; i++) pos = Write(buf, pos, t.GetItem(v, i), t.Items[i]);
            return pos;
        }

        /// <summary>LIST: its count, then each element.</summary>
        static int WriteList(Span<byte> buf, int pos, object v, WireType t)
        {
            int n = t.Lists.Count(v);
            BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)n);
            pos += 4;
            for (int i = 0; i < n; i++) pos = Write(buf, pos, t.Lists.Get(v, i), t.Items[0]);
            return pos;
        }

        /// <summary>DICT: its count, then each key (u32 length, UTF-8) and value.</summary>
        static int WriteDict(Span<byte> buf, int pos, object v, WireType t)
        {
            BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)t.Dicts.Count(v));
            pos += 4;
            foreach (KeyValuePair<string, object> kv in t.Dicts.Pairs(v))
                pos = Write(buf, WriteString(buf, pos, kv.Key, 4), kv.Value, t.Items[0]);
            return pos;
        }

        /// <summary>RECORD: its field count, then each field's name (u8 length, UTF-8) and value.</summary>
        static int WriteRecord(Span<byte> buf, int pos, object v, WireType t)
        {
            BinaryPrimitives.WriteUInt16LittleEndian(buf.Slice(pos), (ushort)t.Items.Length);
            pos += 2;
            for (int i = 0; i < t.Items.Length; i++)
                pos = Write(buf, WriteString(buf, pos, t.Names[i], 1), t.GetField(v, i), t.Items[i]);
            return pos;
        }

        // ---------------------------------------------------------------- the pieces

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
            int start = (int)Pad(pos, Wire.NdArrayAlign);
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

        // NDARRAY_AT: see MeasureNdArrayAt (Codec.cs) for its layout
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

        static void CopyBytes(ReadOnlySpan<byte> src, Span<byte> buf, int pos)
        {
            if (src.Length == 0) return;
            fixed (byte* s = &MemoryMarshal.GetReference(src))
            fixed (byte* d = &buf[pos])
                Buffer.MemoryCopy(s, d, buf.Length - pos, src.Length);
        }
    }
}
