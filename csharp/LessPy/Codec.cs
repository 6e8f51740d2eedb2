using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;

namespace LessPy
{
    /// <summary>The value tags of PROTOCOL.md section 4.</summary>
    internal enum Tag : byte
    {
        None = 0x00, Bool = 0x01, Int32 = 0x02, Int64 = 0x03, Float32 = 0x04, Float64 = 0x05, String = 0x06,
        Bytes = 0x07, Int32Array = 0x08, Int32Jagged = 0x09, Tuple = 0x0A, NdArray = 0x0B,
    }

    /// <summary>A C# type the protocol can carry, with what encoding and decoding it needs.</summary>
    internal sealed class WireType
    {
        public readonly Tag Tag;
        public readonly Type ClrType;
        public readonly WireType[] Items;           // tuples only
        readonly FieldInfo[] _fields;               // tuples only: Item1..ItemN
        readonly ConstructorInfo _ctor;             // tuples only

        WireType(Tag tag, Type clr)
        {
            Tag = tag;
            ClrType = clr;
        }

        WireType(Type tupleType, WireType[] items)
        {
            Tag = Tag.Tuple;
            ClrType = tupleType;
            Items = items;
            _fields = new FieldInfo[items.Length];
            var types = new Type[items.Length];
            for (int i = 0; i < items.Length; i++)
            {
                _fields[i] = tupleType.GetField("Item" + (i + 1));
                types[i] = items[i].ClrType;
            }
            _ctor = tupleType.GetConstructor(types);
        }

        /// <summary>NONE: a void return, or a NONE value decoded without a declared type.</summary>
        public static readonly WireType Void = new WireType(Tag.None, typeof(void));
        static readonly WireType NoneValue = new WireType(Tag.None, typeof(object));
        static readonly WireType[] Scalars =
        {
            new WireType(Tag.Bool, typeof(bool)), new WireType(Tag.Int32, typeof(int)), new WireType(Tag.Int64, typeof(long)),
            new WireType(Tag.Float32, typeof(float)), new WireType(Tag.Float64, typeof(double)), new WireType(Tag.String, typeof(string)),
            new WireType(Tag.Bytes, typeof(byte[])), new WireType(Tag.Int32Array, typeof(int[])), new WireType(Tag.Int32Jagged, typeof(int[][])),
            new WireType(Tag.NdArray, typeof(NdArray)),
        };

        static readonly Type[] TupleDefinitions =
        {
            typeof(ValueTuple<>), typeof(ValueTuple<,>), typeof(ValueTuple<,,>), typeof(ValueTuple<,,,>),
            typeof(ValueTuple<,,,,>), typeof(ValueTuple<,,,,,>), typeof(ValueTuple<,,,,,,>),
        };

        /// <summary>True when a NONE value stands for it (null reference or void).</summary>
        public bool AcceptsNone
        {
            get { return Tag == Tag.None || Tag == Tag.String || Tag == Tag.Bytes || Tag == Tag.Int32Array || Tag == Tag.Int32Jagged || Tag == Tag.NdArray; }
        }

        /// <summary>The wire type of a C# type, or null (with the offending type in <paramref name="unsupported"/>).</summary>
        public static WireType For(Type t, bool isReturn, out Type unsupported)
        {
            unsupported = null;
            if (isReturn && t == typeof(void)) return Void;
            foreach (var s in Scalars)
                if (s.ClrType == t) return s;
            if (t.IsGenericType && !t.IsGenericTypeDefinition)
            {
                Type def = t.GetGenericTypeDefinition();
                int n = Array.IndexOf(TupleDefinitions, def) + 1;
                if (n > 0)
                {
                    Type[] args = t.GetGenericArguments();
                    var items = new WireType[n];
                    for (int i = 0; i < n; i++)
                    {
                        items[i] = For(args[i], false, out unsupported);
                        if (items[i] == null) return null;
                    }
                    return new WireType(t, items);
                }
            }
            unsupported = t;
            return null;
        }

        /// <summary>The tuple type of decoded items (a NONE item becomes an object field holding null).</summary>
        public static WireType TupleOf(WireType[] items)
        {
            var types = new Type[items.Length];
            for (int i = 0; i < items.Length; i++) types[i] = items[i].ClrType;
            return new WireType(TupleDefinitions[items.Length - 1].MakeGenericType(types), items);
        }

        public static WireType NoneItem { get { return NoneValue; } }

        public object GetItem(object tuple, int i) { return _fields[i].GetValue(tuple); }

        public object MakeTuple(object[] values) { return _ctor.Invoke(values); }

        /// <summary>Appends the type descriptor (PROTOCOL.md section 5).</summary>
        public void WriteDescriptor(List<byte> to)
        {
            to.Add((byte)Tag);
            if (Tag != Tag.Tuple) return;
            to.Add((byte)Items.Length);
            foreach (var item in Items) item.WriteDescriptor(to);
        }

        public override string ToString()
        {
            return ClrType == typeof(void) ? "void" : ClrType.ToString();
        }
    }

    /// <summary>A decoded error reply (PROTOCOL.md section 7).</summary>
    internal struct ErrorFrame
    {
        public byte Kind;
        public string PythonType;
        public string Message;
        public string Traceback;
    }

    /// <summary>
    /// Values to bytes and back, over spans: no I/O. Encoding is two passes, <c>Measure*</c> then <c>Write*</c>, so a
    /// frame's size is known before a byte is written. Decoding checks every length against the buffer.
    /// Positions are offsets from the start of the payload (padding is measured from there).
    /// </summary>
    internal static unsafe class Codec
    {
        internal const int MaxNameBytes = 1024;
        internal const int MaxDims = 32;
        static readonly UTF8Encoding Utf8 = new UTF8Encoding(false, true);

        static long Pad(long pos, int to) { return (pos + to - 1) / to * to; }

        // ---------------------------------------------------------------- encoding

        /// <summary>The position just after <paramref name="v"/> encoded at <paramref name="pos"/>.</summary>
        public static long Measure(object v, WireType t, long pos)
        {
            if (v == null) return pos + 1;
            switch (t.Tag)
            {
                case Tag.None: return pos + 1;
                case Tag.Bool: return pos + 2;
                case Tag.Int32: case Tag.Float32: return pos + 5;
                case Tag.Int64: case Tag.Float64: return pos + 9;
                case Tag.String: return pos + 5 + Utf8.GetByteCount((string)v);
                case Tag.Bytes: return pos + 5 + ((byte[])v).Length;
                case Tag.Int32Array: return MeasureIntArray((int[])v, pos + 1);
                case Tag.Int32Jagged:
                {
                    var rows = (int[][])v;
                    long p = pos + 5;
                    for (int i = 0; i < rows.Length; i++) p = MeasureIntArray(rows[i], p);
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
            }
            throw new ArgumentException("no encoding for " + t);
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
            if (t.Tag == Tag.NdArray && ((NdArray)v).IsRequestArray) return WriteNdArrayAt(buf, pos, (NdArray)v);
            buf[pos++] = (byte)t.Tag;
            switch (t.Tag)
            {
                case Tag.Bool:
                    buf[pos] = (bool)v ? (byte)1 : (byte)0;
                    return pos + 1;
                case Tag.Int32:
                    BinaryPrimitives.WriteInt32LittleEndian(buf.Slice(pos), (int)v);
                    return pos + 4;
                case Tag.Int64:
                    BinaryPrimitives.WriteInt64LittleEndian(buf.Slice(pos), (long)v);
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
                {
                    string s = (string)v;
                    int n = 0;
                    Span<byte> dst = buf.Slice(pos + 4);
                    if (s.Length > 0)
                    {
                        fixed (char* c = s)
                        fixed (byte* d = &MemoryMarshal.GetReference(dst))
                            n = Utf8.GetBytes(c, s.Length, d, dst.Length);
                    }
                    BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)n);
                    return pos + 4 + n;
                }
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
                    BinaryPrimitives.WriteUInt32LittleEndian(buf.Slice(pos), (uint)rows.Length);
                    pos += 4;
                    for (int i = 0; i < rows.Length; i++) pos = WriteIntArray(buf, pos, rows[i]);
                    return pos;
                }
                case Tag.Tuple:
                    buf[pos++] = (byte)t.Items.Length;
                    for (int i = 0; i < t.Items.Length; i++) pos = Write(buf, pos, t.GetItem(v, i), t.Items[i]);
                    return pos;
                case Tag.NdArray:
                    return WriteNdArray(buf, pos, (NdArray)v);
            }
            throw new ArgumentException("no encoding for " + t);
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

        const byte NdArrayAtTag = 0x0C;

        static long MeasureNdArrayAt(NdArray nd, long pos)
        {
            return Pad(pos + 3 + 8L * nd.Rank, 8) + 8;
        }

        static int WriteNdArrayAt(Span<byte> buf, int pos, NdArray nd)
        {
            Lane lane = nd.RequestLane;
            if (lane.Encoder != System.Threading.Thread.CurrentThread || lane.Requests.Value != nd.RequestGeneration)
                throw new ArgumentException("an in-place request array can be sent only by the next call of the thread that made it, on the same "
                    + "connection; this one was made for another thread or connection, or an earlier call already sent it: make a new one with "
                    + "ILessPyConnection.NewRequestArray");
            lane.SentEnd = Math.Max(lane.SentEnd, nd.RequestOffset + (long)nd.Length * nd.ElementSize);
            int[] shape = nd.ShapeNoCopy;
            buf[pos++] = NdArrayAtTag;
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
            long p = 2 + name.Length + descriptor.Length + 1;
            for (int i = 0; i < argTypes.Length; i++) p = Measure(args[i], argTypes[i], p);
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
        /// Decodes one value at <paramref name="pos"/>. <paramref name="expected"/> null accepts any value and reports
        /// its type in <paramref name="actual"/>. An NDARRAY's data is a slice of <paramref name="mem"/>, not a copy;
        /// everything else is copied into managed objects.
        /// </summary>
        public static object Read(ReadOnlyMemory<byte> mem, ReadOnlySpan<byte> s, ref int pos, WireType expected, out WireType actual)
        {
            Need(s, pos, 1, "a value tag");
            int at = pos;
            var tag = (Tag)s[pos++];
            if (tag == Tag.None)
            {
                if (expected == null) { actual = WireType.NoneItem; return null; }
                if (!expected.AcceptsNone) throw Bad(at, "expected " + expected + ", got NONE");
                actual = expected;
                return null;
            }
            if (expected != null && expected.Tag != tag)
                throw Bad(at, "expected " + expected + " (tag " + (int)expected.Tag + "), got tag " + (int)tag);
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
                    return v;
                }
                case Tag.Int64:
                {
                    Need(s, pos, 8, "INT64");
                    long v = BinaryPrimitives.ReadInt64LittleEndian(s.Slice(pos));
                    pos += 8;
                    if (actual == null) actual = WireType.For(typeof(long), false, out unused);
                    return v;
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
                        values[i] = Read(mem, s, ref pos, expected == null ? null : expected.Items[i], out types[i]);
                    if (actual == null) actual = WireType.TupleOf(types);
                    return actual.MakeTuple(values);
                }
                case Tag.NdArray:
                {
                    Need(s, pos, 2, "NDARRAY dtype and ndim");
                    DType dt = DType.ForCode(s[pos]);
                    if (dt == null) throw Bad(pos, "unknown dtype code " + s[pos]);
                    int ndim = s[pos + 1];
                    if (ndim > MaxDims) throw Bad(pos + 1, "ndim " + ndim + " is over " + MaxDims);
                    pos += 2;
                    Need(s, pos, 8L * ndim, "NDARRAY shape");
                    var shape = new int[ndim];
                    long count = 1;
                    for (int i = 0; i < ndim; i++, pos += 8)
                    {
                        ulong d = BinaryPrimitives.ReadUInt64LittleEndian(s.Slice(pos));
                        if (d > int.MaxValue) throw Bad(pos, "dimension " + d + " does not fit in an int");
                        shape[i] = (int)d;
                        count = count == 0 || d == 0 ? 0 : count * (long)d;
                        if (count > int.MaxValue) throw Bad(pos, "the array has more than int.MaxValue elements");
                    }
                    int start = (int)Pad(pos, 64);
                    long len = count * dt.ItemSize;
                    Need(s, start, len, "NDARRAY data");
                    pos = start + (int)len;
                    if (actual == null) actual = WireType.For(typeof(NdArray), false, out unused);
                    return new NdArray(dt, shape, mem.Slice(start, (int)len));
                }
            }
            throw Bad(at, "unknown value tag 0x" + ((byte)tag).ToString("x2"));
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
