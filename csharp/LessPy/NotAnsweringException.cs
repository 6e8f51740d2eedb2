using System.Globalization;

namespace LessPy
{
    /// <summary>
    /// The server accepted a connection but did not send its part of the handshake in time (<see cref="Lane.Open"/>).
    /// Internal: the channel turns it into a message that says whether the server process is alive (stopped, or busy
    /// holding Python's GIL) or gone.
    /// </summary>
    internal sealed class NotAnsweringException : LessPyException
    {
        internal NotAnsweringException(string what, double seconds)
            : base("the server did not send " + what + " within " + seconds.ToString("0.###", CultureInfo.InvariantCulture) + " s")
        {
            What = what;
            Seconds = seconds;
        }

        /// <summary>With a message of its own (a connect that timed out: <see cref="NotifySocket.Connect"/>).</summary>
        internal NotAnsweringException(string what, double seconds, string message)
            : base(message)
        {
            What = what;
            Seconds = seconds;
        }

        /// <summary>What was not sent ("the server's hello", ...).</summary>
        public string What { get; }

        /// <summary>How long the client waited.</summary>
        public double Seconds { get; }
    }
}
