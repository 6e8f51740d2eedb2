using System;
using System.Runtime.InteropServices;
using System.Text;

namespace LessPy
{
    /// <summary>
    /// A NumPy array: shape, dtype and C-order (row-major) little-endian data.
    /// <para>
    /// <b>Results are views.</b> An NdArray returned by a call is a zero-copy view over the response mapping of the lane
    /// that carried the call: reading it costs nothing. It stays valid, and unchanged, until <em>the same thread's
    /// next call on the same proxy</em> (or the proxy's Dispose, or a reconnection to a restarted server). After that,
    /// any access to its data throws <see cref="InvalidOperationException"/>; it never shows other data.
    /// For an asynchronous (Task) method "the same thread" is the thread that called the method.
    /// </para>
    /// <para>
    /// With more threads than lanes (64 per proxy, the server's limit per client) calling at once, a thread that finds
    /// no free lane takes over the least recently used lane whose result views another thread holds: those views then
    /// throw. <b>The checked reads</b> — <see cref="ToArray{T}"/>, <see cref="Data"/>, <see cref="CopyTo{T}(Span{T})"/>,
    /// and passing the array as an argument — look at the view's validity before <em>and after</em> copying, so a copy
    /// that overlapped a takeover or a reconnection throws instead of returning mixed bytes: they are the safe way to
    /// read a result that other threads' calls may invalidate. <b>The raw reads</b> — a span from <see cref="AsSpan{T}"/>,
    /// <see cref="DataMemory"/> (its Span, its Pin, its ToArray) — are checked only when taken: what is read through
    /// them after another call on the lane (this thread's next call, or another thread's takeover) may be other data,
    /// or zeros once the connection closed (never a crash while the NdArray itself is reachable). Use them only
    /// with at most 64 threads calling per proxy, and only until this thread's next call; keep the NdArray referenced
    /// while you read a span of it.
    /// </para>
    /// <para>
    /// An NdArray made with <see cref="FromArray{T}"/> or <see cref="FromBytes"/> wraps the given array without copying
    /// it; its data is copied once, straight into the request mapping, when it is sent. One made with
    /// <see cref="ILessPyConnection.NewRequestArray{T}"/> already lives in the request mapping: fill it through
    /// <see cref="AsWritableSpan{T}"/> and pass it to this thread's next call, which sends it without a copy. Its lane
    /// is never taken over by another thread while the thread that made it is alive, so writing through the span is
    /// safe from the thread that made the array (or another, while that thread makes no call) <em>until that thread's
    /// next call starts</em>. After that the span must not be written any more: a span cannot be checked, and the lane
    /// may carry another thread's call by then, whose request it would change. Take the span again with
    /// <see cref="AsWritableSpan{T}"/> (which throws once the array is sent) rather than keeping it across calls. After a
    /// reconnection or Dispose, writes through an old span land in private zero memory (lost, never a crash).
    /// </para>
    /// </summary>
    public sealed class NdArray
    {
        readonly int[] _shape;
        readonly ReadOnlyMemory<byte> _data;
        readonly MappedMemoryManager _mapped;        // the view's window over a lane's mapping, else null (a wrapped array)

        internal NdArray(DType dtype, int[] shape, ReadOnlyMemory<byte> data, RequestArrays requestArrays, long requestGeneration, long requestOffset)
            : this(dtype, shape, data)
        {
            RequestArrays = requestArrays;
            RequestGeneration = requestGeneration;
            RequestOffset = requestOffset;
        }

        internal NdArray(DType dtype, int[] shape, ReadOnlyMemory<byte> data)
        {
            DType = dtype;
            _shape = shape;
            _data = data;
            MappedMemoryManager m;
            if (MemoryMarshal.TryGetMemoryManager<byte, MappedMemoryManager>(data, out m)) _mapped = m;
            long n = 1;
            for (int i = 0; i < shape.Length; i++) n *= shape[i];
            Length = checked((int)n);
        }

        internal DType DType { get; }

        /// <summary>In-place request arrays only: those of the lane whose request file holds the data, else null.</summary>
        internal RequestArrays RequestArrays { get; }

        /// <summary>In-place request arrays only: the generation of <see cref="RequestArrays"/> the array belongs to.</summary>
        internal long RequestGeneration { get; }

        /// <summary>In-place request arrays only: the data's offset from the start of the request payload (a multiple of Wire.NdArrayAlign).</summary>
        internal long RequestOffset { get; }

        /// <summary>True for an array made by <see cref="ILessPyConnection.NewRequestArray{T}"/> (it lives in the request mapping).</summary>
        public bool IsRequestArray { get { return RequestArrays != null; } }

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
        /// thread's next call on the proxy (then taking its Span throws <see cref="InvalidOperationException"/>). Reads
        /// through it are checked only when its Span is taken (see the class summary): a span taken from it earlier must
        /// not be used after that, and <c>DataMemory.ToArray()</c> is not checked after its copy; <see cref="Data"/> is.
        /// </summary>
        public ReadOnlyMemory<byte> DataMemory { get { return _data; } }

        /// <summary>
        /// A new copy of the raw data on each access (Length × ElementSize bytes), checked: it throws
        /// <see cref="InvalidOperationException"/> if the view was no longer valid before or after the copy.
        /// </summary>
        public byte[] Data
        {
            get
            {
                byte[] copy = _data.ToArray();
                if (_mapped != null) _mapped.CheckAfterRead();
                return copy;
            }
        }

        /// <summary>
        /// Copies the data into <paramref name="destination"/> (at least <see cref="Length"/> elements; same type checks as
        /// <see cref="AsSpan{T}"/>), checked as <see cref="ToArray{T}"/> is: a copy without allocating.
        /// </summary>
        /// <exception cref="InvalidOperationException"><typeparamref name="T"/> does not match the dtype, or the view is (or became) stale.</exception>
        /// <exception cref="ArgumentException"><paramref name="destination"/> is too short.</exception>
        public void CopyTo<T>(Span<T> destination) where T : struct
        {
            ReadOnlySpan<T> src = AsSpan<T>();
            if (destination.Length < src.Length)
                throw new ArgumentException("the destination holds " + destination.Length + " elements, the array " + src.Length, nameof(destination));
            src.CopyTo(destination);
            if (_mapped != null) _mapped.CheckAfterRead();
        }

        /// <summary>
        /// The data as a span of <typeparamref name="T"/>, without a copy. <typeparamref name="T"/> must have the
        /// dtype's item size and, for .NET primitives, the dtype's kind (float32 as float, uint8 as byte, ...).
        /// For a result it is valid until this thread's next call on the same proxy (or Dispose, or a takeover of its lane
        /// by another thread when more than 64 threads call): the span itself cannot detect that, and what it shows
        /// afterwards may be another call's data. Do not keep it longer; to keep or share the data, use
        /// <see cref="ToArray{T}"/> or <see cref="CopyTo{T}(Span{T})"/>, which check the view after copying.
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
        /// starts; the same type checks as <see cref="AsSpan{T}"/>. Write through it only until the next call of the thread
        /// that made the array starts (see the class summary): after that its writes may land in another call's request.
        /// </summary>
        /// <exception cref="InvalidOperationException">Not a request array, <typeparamref name="T"/> does not match the dtype, or already sent.</exception>
        public Span<T> AsWritableSpan<T>() where T : struct
        {
            if (RequestArrays == null)
                throw new InvalidOperationException("only an array made by ILessPyConnection.NewRequestArray is writable in place; results and wrapped arrays are not");
            CheckElementType(typeof(T), ManagedSize<T>.Value);
            return MemoryMarshal.Cast<byte, T>(MemoryMarshal.AsMemory(_data).Span);
        }

        /// <summary>
        /// A new array holding a copy of the data, as <typeparamref name="T"/> (same checks as <see cref="AsSpan{T}"/>).
        /// Checked: if the view was no longer valid before the copy or became invalid during it (another thread's call took
        /// its lane over, the connection closed or reconnected), it throws <see cref="InvalidOperationException"/>; it never
        /// returns another call's data. The safe way to keep a result.
        /// </summary>
        public T[] ToArray<T>() where T : struct
        {
            T[] copy = AsSpan<T>().ToArray();
            if (_mapped != null) _mapped.CheckAfterRead();
            return copy;
        }

        /// <summary>
        /// A float16 array's values as a new <c>float[]</c> (C order), each converted exactly (every float16 value,
        /// subnormals, infinities and NaN included, is a float). .NET Standard 2.0 has no <c>Half</c>; the raw
        /// 16-bit patterns are <c>ToArray&lt;ushort&gt;()</c>. Checked as <see cref="ToArray{T}"/> is.
        /// </summary>
        /// <exception cref="InvalidOperationException">The dtype is not float16, or the view is (or became) stale.</exception>
        public float[] ToHalfAsSingle()
        {
            if (DType.Name != "float16")
                throw new InvalidOperationException("ToHalfAsSingle reads float16 data, not " + DType.Name + (DType.ClrType != null ? "; use ToArray<" + DType.ClrType.Name + ">()" : ""));
            ReadOnlySpan<ushort> bits = MemoryMarshal.Cast<byte, ushort>(_data.Span);
            var values = new float[bits.Length];
            for (int i = 0; i < bits.Length; i++) values[i] = HalfToSingle(bits[i]);
            if (_mapped != null) _mapped.CheckAfterRead();
            return values;
        }

        /// <summary>
        /// A complex64 or complex128 array's values as two new arrays of doubles, the real parts and the imaginary parts
        /// (C order; complex64's floats are widened exactly): <c>new System.Numerics.Complex(real[i], imaginary[i])</c>.
        /// For complex128, <c>ToArray&lt;System.Numerics.Complex&gt;()</c> also works (the same layout; reference
        /// System.Numerics); complex64 has no .NET type. Checked as <see cref="ToArray{T}"/> is.
        /// </summary>
        /// <exception cref="InvalidOperationException">The dtype is not complex64 or complex128, or the view is (or became) stale.</exception>
        public void ToComplex(out double[] real, out double[] imaginary)
        {
            var re = new double[Length];
            var im = new double[Length];
            if (DType.Name == "complex128")
            {
                ReadOnlySpan<double> d = MemoryMarshal.Cast<byte, double>(_data.Span);
                for (int i = 0; i < re.Length; i++) { re[i] = d[2 * i]; im[i] = d[2 * i + 1]; }
            }
            else if (DType.Name == "complex64")
            {
                ReadOnlySpan<float> f = MemoryMarshal.Cast<byte, float>(_data.Span);
                for (int i = 0; i < re.Length; i++) { re[i] = f[2 * i]; im[i] = f[2 * i + 1]; }
            }
            else
                throw new InvalidOperationException("ToComplex reads complex64 or complex128 data, not " + DType.Name);
            if (_mapped != null) _mapped.CheckAfterRead();
            real = re;
            imaginary = im;
        }

        /// <summary>IEEE 754 binary16 to binary32: sign, exponent rebiased from 15 to 127, subnormals normalised.</summary>
        static float HalfToSingle(ushort h)
        {
            uint sign = (uint)(h & 0x8000) << 16;
            int exp = (h >> 10) & 0x1F;
            uint mant = (uint)(h & 0x3FF);
            uint bits;
            if (exp == 0x1F) bits = sign | 0x7F800000u | (mant << 13);          // infinity, NaN (payload kept)
            else if (exp != 0) bits = sign | (uint)(exp + 112) << 23 | (mant << 13);
            else if (mant == 0) bits = sign;                                     // ±0
            else
            {
                // subnormal: value = mant * 2^-24; shift the mantissa up until its leading 1 is the implicit bit
                int e = 113;
                while ((mant & 0x400) == 0) { mant <<= 1; e--; }
                bits = sign | (uint)e << 23 | ((mant & 0x3FF) << 13);
            }
            return BitConverter.ToSingle(BitConverter.GetBytes(bits), 0);
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
}
