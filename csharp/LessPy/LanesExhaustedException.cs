namespace LessPy
{
    /// <summary>
    /// A call cannot start because every lane of the connection is held by an open stream (an <c>IEnumerable&lt;T&gt;</c>
    /// method's enumerator neither run to the end nor disposed), so waiting would not help: dispose the enumerators.
    /// </summary>
    public sealed class LanesExhaustedException : LessPyException
    {
        internal LanesExhaustedException(string message, int lanes) : base(message) { Lanes = lanes; }

        /// <summary>How many lanes the connection has (all held).</summary>
        public int Lanes { get; }
    }
}
