namespace LessPy
{
    /// <summary>The server refused the connection: wrong session key, unsupported version, or busy (its message names the limit).</summary>
    public sealed class HandshakeException : LessPyException
    {
        internal HandshakeException(string message, int result) : this(message, result, "") { }

        internal HandshakeException(string message, int result, string serverText) : base(message) { Result = result; ServerText = serverText; }

        /// <summary>The server's handshake result: 1 wrong key, 2 unsupported version, 3 busy, 4 in use (a stop refused).</summary>
        internal int Result { get; }

        /// <summary>The message the server sent with its result (UTF-8 text, "" when it sent none).</summary>
        internal string ServerText { get; }
    }
}
