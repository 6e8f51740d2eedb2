using System;
using System.Buffers;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// A NumPy array: shape, dtype and C-order (row-major) little-endian data.
    /// <para>
    /// <b>Results are views.</b> An NdArray returned by a call is a zero-copy view over the response mapping of the lane
    /// that carried the call: reading it costs nothing. It stays valid, and unchanged, until <em>the same thread's
    /// next call on the same proxy</em> (or the proxy's Dispose): until then no other thread's call can use that lane,
    /// so nothing can overwrite it. After that, any access to its data throws <see cref="InvalidOperationException"/>;
    /// it never shows other data. A <see cref="ReadOnlySpan{T}"/> from <see cref="AsSpan{T}"/> or
    /// <see cref="DataMemory"/> cannot throw later, so it is valid only until this thread's next call on the proxy
    /// (or Dispose): do not keep it past that. Use <see cref="Data"/> or <see cref="ToArray{T}"/> to keep a copy.
    /// For an asynchronous (Task) method "the same thread" is the thread that called the method.
    /// </para>
    /// <para>
    /// With more threads than lanes (16 per proxy) calling at once, a thread that finds no free lane takes the least
    /// recently used held one: the views of its holder then throw (a Span taken from them earlier is the one thing
    /// that could see new data: keep at most 16 threads per proxy, or copy what you keep).
    /// </para>
    /// <para>
    /// An NdArray made with <see cref="FromArray{T}"/> or <see cref="FromBytes"/> wraps the given array without copying
    /// it; its data is copied once, straight into the request mapping, when it is sent. One made with
    /// <see cref="ILessPyConnection.NewRequestArray{T}"/> already lives in the request mapping: fill it through
    /// <see cref="AsWritableSpan{T}"/> and pass it to this thread's next call, which sends it without a copy.
    /// </para>
    /// </summary>
    public sealed class NdArray
    {
        readonly int[] _shape;
        readonly ReadOnlyMemory<byte> _data;

        internal NdArray(DType dtype, int[] shape, ReadOnlyMemory<byte> data, Lane requestLane, long requestGeneration, long requestOffset)
            : this(dtype, shape, data)
        {
            RequestLane = requestLane;
            RequestGeneration = requestGeneration;
            RequestOffset = requestOffset;
        }

        internal NdArray(DType dtype, int[] shape, ReadOnlyMemory<byte> data)
        {
            DType = dtype;
            _shape = shape;
            _data = data;
            long n = 1;
            for (int i = 0; i < shape.Length; i++) n *= shape[i];
            Length = checked((int)n);
        }

        internal DType DType { get; }

        /// <summary>In-place request arrays only: the lane whose request file holds the data, else null.</summary>
        internal Lane RequestLane { get; }

        /// <summary>In-place request arrays only: the lane's request generation the array belongs to.</summary>
        internal long RequestGeneration { get; }

        /// <summary>In-place request arrays only: the data's offset from the start of the request payload (a multiple of 64).</summary>
        internal long RequestOffset { get; }

        /// <summary>True for an array made by <see cref="ILessPyConnection.NewRequestArray{T}"/> (it lives in the request mapping).</summary>
        public bool IsRequestArray { get { return RequestLane != null; } }

        internal int[] ShapeNoCopy { get { return _shape; } }

        /// <summary>The shape, one entry per dimension (empty for a 0-d array). Returns a new copy on each access.</summary>
        public int[] Shape { get { return (int[])_shape.Clone(); } }

        /// <summary>The number of dimensions.</summary>
        public int Rank { get { return _shape.Length; } }

        /// <summary>The NumPy dtype name: bool, int8, uint8, int16, uint16, int32, uint32, int64, uint64, float16, float32, float64, complex64 or complex128.</summary>
        public string Dtype { get { return DType.Name; } }

        /// <summary>The number of elements (the product of the shape; 1 for a 0-d array).</summary>
        public int Length { get; }

        /// <summary>The size in bytes of one element.</summary>
        public int ElementSize { get { return DType.ItemSize; } }

        /// <summary>
        /// The raw data, without a copy. For a result this is a view over the response mapping: valid until the same
        /// thread's next call on the proxy (then reading it throws <see cref="InvalidOperationException"/>; a span taken
        /// from it earlier must not be used after that).
        /// </summary>
        public ReadOnlyMemory<byte> DataMemory { get { return _data; } }

        /// <summary>A new copy of the raw data on each access (Length × ElementSize bytes).</summary>
        public byte[] Data { get { return _data.ToArray(); } }

        /// <summary>
        /// The data as a span of <typeparamref name="T"/>, without a copy. <typeparamref name="T"/> must have the
        /// dtype's item size and, for .NET primitives, the dtype's kind (float32 as float, uint8 as byte, ...).
        /// For a result it is valid until this thread's next call on the same proxy (or Dispose): the span itself cannot
        /// detect that, so do not keep it longer.
        /// </summary>
        /// <exception cref="InvalidOperationException"><typeparamref name="T"/> does not match the dtype, or the view is stale.</exception>
        public ReadOnlySpan<T> AsSpan<T>() where T : struct
        {
            CheckElementType(typeof(T), ManagedSize<T>.Value);
            return MemoryMarshal.Cast<byte, T>(_data.Span);
        }

        /// <summary>
        /// The data of an in-place request array (<see cref="ILessPyConnection.NewRequestArray{T}"/>) as a writable span,
        /// without a copy: fill it, then pass the array to this thread's next call on the proxy. Valid until that call
        /// starts; the same type checks as <see cref="AsSpan{T}"/>.
        /// </summary>
        /// <exception cref="InvalidOperationException">Not a request array, <typeparamref name="T"/> does not match the dtype, or already sent.</exception>
        public Span<T> AsWritableSpan<T>() where T : struct
        {
            if (RequestLane == null)
                throw new InvalidOperationException("only an array made by ILessPyConnection.NewRequestArray is writable in place; results and wrapped arrays are not");
            CheckElementType(typeof(T), ManagedSize<T>.Value);
            return MemoryMarshal.Cast<byte, T>(MemoryMarshal.AsMemory(_data).Span);
        }

        /// <summary>A new array holding a copy of the data, as <typeparamref name="T"/> (same checks as <see cref="AsSpan{T}"/>).</summary>
        public T[] ToArray<T>() where T : struct
        {
            return AsSpan<T>().ToArray();
        }

        /// <summary>
        /// Wraps <paramref name="data"/> as an array of the given shape without copying it (keep it unchanged until the
        /// call that sends it returns). The dtype follows <typeparamref name="T"/>: float→float32, double→float64,
        /// int→int32, long→int64, byte→uint8, sbyte→int8, short→int16, ushort→uint16, uint→uint32, ulong→uint64,
        /// bool→bool. No shape means a 1-D array of <c>data.Length</c> elements.
        /// </summary>
        /// <exception cref="ArgumentException">The shape's product is not <c>data.Length</c>, or <typeparamref name="T"/> has no NumPy dtype.</exception>
        public static NdArray FromArray<T>(T[] data, params int[] shape) where T : struct
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            DType dt = DType.ForClrType(typeof(T));
            if (dt == null) throw new ArgumentException(typeof(T).Name + " has no NumPy dtype; use NdArray.FromBytes", nameof(data));
            int[] s = CheckShape(shape, data.Length, nameof(shape));
            return new NdArray(dt, s, new ArrayMemoryManager<T>(data).Memory);
        }

        /// <summary>A 0-d array holding one value (NumPy's <c>np.array(value)</c>).</summary>
        public static NdArray Scalar<T>(T value) where T : struct
        {
            DType dt = DType.ForClrType(typeof(T));
            if (dt == null) throw new ArgumentException(typeof(T).Name + " has no NumPy dtype", nameof(value));
            return new NdArray(dt, new int[0], new ArrayMemoryManager<T>(new T[] { value }).Memory);
        }

        /// <summary>
        /// Wraps raw little-endian C-order bytes without copying them. No shape means 1-D.
        /// </summary>
        /// <param name="data">Length must be the shape's product times the dtype's item size.</param>
        /// <param name="dtype">A NumPy dtype name, as listed for <see cref="Dtype"/>.</param>
        /// <param name="shape">The shape; none means 1-D.</param>
        public static NdArray FromBytes(byte[] data, string dtype, params int[] shape)
        {
            if (data == null) throw new ArgumentNullException(nameof(data));
            if (dtype == null) throw new ArgumentNullException(nameof(dtype));
            DType dt = DType.ForName(dtype);
            if (dt == null) throw new ArgumentException("unknown dtype '" + dtype + "'", nameof(dtype));
            if (data.Length % dt.ItemSize != 0)
                throw new ArgumentException("data.Length " + data.Length + " is not a multiple of the " + dtype + " item size " + dt.ItemSize, nameof(data));
            int[] s = CheckShape(shape, data.Length / dt.ItemSize, nameof(shape));
            return new NdArray(dt, s, new ReadOnlyMemory<byte>(data));
        }

        /// <summary>For example <c>NdArray(float32, [4096, 4096])</c>.</summary>
        public override string ToString()
        {
            var sb = new StringBuilder("NdArray(");
            sb.Append(DType.Name).Append(", [");
            for (int i = 0; i < _shape.Length; i++)
            {
                if (i > 0) sb.Append(", ");
                sb.Append(_shape[i]);
            }
            return sb.Append("])").ToString();
        }

        static int[] CheckShape(int[] shape, int count, string paramName)
        {
            if (shape == null || shape.Length == 0) return new[] { count };
            if (shape.Length > 32) throw new ArgumentException("at most 32 dimensions", paramName);
            long n = 1;
            for (int i = 0; i < shape.Length; i++)
            {
                if (shape[i] < 0) throw new ArgumentOutOfRangeException(paramName, "a dimension is negative");
                n *= shape[i];
                if (n > int.MaxValue) throw new ArgumentException("the shape has more than int.MaxValue elements", paramName);
            }
            if (n != count) throw new ArgumentException("the shape holds " + n + " elements but the data has " + count, paramName);
            return (int[])shape.Clone();
        }

        void CheckElementType(Type t, int size)
        {
            if (size != DType.ItemSize)
                throw new InvalidOperationException("cannot view " + DType.Name + " data (item size " + DType.ItemSize + ") as " + t.Name + " (size " + size + ")");
            DType tdt = DType.ForClrType(t);
            if (tdt == null || tdt == DType) return;
            if (DType.ClrType == null) return;               // float16, complex: no .NET primitive, reinterpretation is the only way
            if (tdt.Name == "uint8" && DType.Name == "bool") return;
            throw new InvalidOperationException("cannot view " + DType.Name + " data as " + t.Name + " (" + tdt.Name + "); use " + DType.ClrType.Name);
        }
    }

    /// <summary>The size of T as a span element (Marshal.SizeOf says 4 for bool: the marshalled size).</summary>
    internal static class ManagedSize<T> where T : struct
    {
        public static readonly int Value = MemoryMarshal.AsBytes(new Span<T>(new T[1])).Length;
    }

    /// <summary>Exposes a T[] as bytes without copying it; pins it on demand.</summary>
    internal sealed class ArrayMemoryManager<T> : MemoryManager<byte> where T : struct
    {
        readonly T[] _array;

        public ArrayMemoryManager(T[] array) { _array = array; }

        public override Span<byte> GetSpan()
        {
            return MemoryMarshal.AsBytes(new Span<T>(_array));
        }

        public override unsafe MemoryHandle Pin(int elementIndex = 0)
        {
            GCHandle h = GCHandle.Alloc(_array, GCHandleType.Pinned);
            byte* p = (byte*)h.AddrOfPinnedObject() + elementIndex;
            return new MemoryHandle(p, h);
        }

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }
    }

    /// <summary>Counts the uses of a lane's file: a view made at generation g is valid while the count is g.</summary>
    internal sealed class ViewGeneration
    {
        long _value;
        public long Value { get { return Volatile.Read(ref _value); } }
        public void Bump() { Interlocked.Increment(ref _value); }
    }

    /// <summary>A window of the response mapping that refuses access once the next call has overwritten it.</summary>
    internal sealed unsafe class MappedMemoryManager : MemoryManager<byte>
    {
        readonly byte* _pointer;
        readonly int _length;
        readonly ViewGeneration _generation;
        readonly long _valid;

        public MappedMemoryManager(byte* pointer, int length, ViewGeneration generation)
        {
            _pointer = pointer;
            _length = length;
            _generation = generation;
            _valid = generation.Value;
        }

        void Check()
        {
            if (_generation.Value != _valid)
                throw new InvalidOperationException(
                    "this NdArray is no longer valid: it was a view over a lane's mapping, valid until the same thread's next call on the proxy "
                    + "(or Dispose, or, for a request array, the call that sent it); call .Data or ToArray() before that to keep a copy");
        }

        public override Span<byte> GetSpan()
        {
            Check();
            return new Span<byte>(_pointer, _length);
        }

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            Check();
            if ((uint)elementIndex > (uint)_length) throw new ArgumentOutOfRangeException(nameof(elementIndex));
            return new MemoryHandle(_pointer + elementIndex);
        }

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }
    }
}
