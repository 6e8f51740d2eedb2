namespace LessPy
{
    /// <summary>A lane file belongs to another server run than the connection's handshake (the server restarted).</summary>
    internal sealed class SessionChangedException : LessPyException
    {
        internal SessionChangedException(string message) : base(message) { }
    }
}
