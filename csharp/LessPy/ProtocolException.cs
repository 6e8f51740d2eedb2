namespace LessPy
{
    /// <summary>A frame or a mapping header broke the wire protocol (docs/PROTOCOL.md), on either side.</summary>
    public sealed class ProtocolException : LessPyException
    {
        internal ProtocolException(string message) : base(message) { }
    }
}
