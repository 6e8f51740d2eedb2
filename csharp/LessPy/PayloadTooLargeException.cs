namespace LessPy
{
    /// <summary>
    /// A request or a result does not fit its mapping. A too-large request is detected before anything is written,
    /// so the connection stays usable; raise the <c>capacity</c> given to <see cref="LessPythonInvoke.Initialize{T}"/>.
    /// </summary>
    public sealed class PayloadTooLargeException : LessPyException
    {
        internal PayloadTooLargeException(string message, long size, long capacity) : base(message)
        {
            Size = size;
            Capacity = capacity;
        }

        /// <summary>The size in bytes the frame needed (header included), or -1 when the server did not say.</summary>
        public long Size { get; }

        /// <summary>The mapping's capacity in bytes (header included).</summary>
        public long Capacity { get; }
    }
}
