using System;

namespace LessPy
{
    /// <summary>The server cannot be reached, could not be started, died, or closed the connection during a call.</summary>
    public sealed class ServerUnavailableException : LessPyException
    {
        internal ServerUnavailableException(string message) : base(message) { }
        internal ServerUnavailableException(string message, Exception inner) : base(message, inner) { }
    }
}
