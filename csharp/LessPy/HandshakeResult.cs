namespace LessPy
{
    /// <summary>The handshake's result byte (section 3).</summary>
    internal enum HandshakeResult : byte
    {
        Accepted = 0,
        WrongKey = 1,
        UnsupportedVersion = 2,
        Busy = 3,
        /// <summary>A stop request while other clients have lanes open: refused, the server goes on.</summary>
        InUse = 4,
    }
}
