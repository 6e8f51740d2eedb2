using System;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// The byte stream to a server's notify socket (a lane's wake-up bytes, the handshake, probes).
    /// On Linux the Unix socket is driven through libc directly: Mono's <see cref="Socket"/> reads machine.config and
    /// the network interfaces the first time it is used, which a fresh process would pay on every
    /// Connect and Initialize. TCP (long folder paths, Windows) and other systems use <see cref="Socket"/>.
    /// Errors are <see cref="SocketException"/>s and a disposed socket throws <see cref="ObjectDisposedException"/>,
    /// as with <see cref="Socket"/>.
    /// </summary>
    internal abstract class NotifySocket : IDisposable
    {
        /// <summary>
        /// Connects to <paramref name="at"/> (a <see cref="UnixEndPoint"/> or a loopback <see cref="IPEndPoint"/>), waiting
        /// until <paramref name="deadline"/> (a Stopwatch timestamp; long.MaxValue: no limit) and while <paramref name="ct"/>
        /// is not cancelled. A server that is stopped (SIGSTOP) or holds the GIL accepts nothing, so its listen queue fills
        /// up with connections that were given up (the kernel keeps them until the server accepts them); a blocking
        /// connect to a full queue waits until the server resumes. The connect never blocks: a full
        /// queue is retried until the deadline, a connect in progress (TCP) is waited for until the deadline.
        /// </summary>
        /// <exception cref="NotAnsweringException">The deadline passed before the server's socket took the connection.</exception>
        /// <exception cref="OperationCanceledException"><paramref name="ct"/> was cancelled meanwhile.</exception>
        public static NotifySocket Connect(EndPoint at, long deadline, CancellationToken ct)
        {
            var unix = at as UnixEndPoint;
            if (unix != null && PosixNotifySocket.Usable) return PosixNotifySocket.Open(unix.Path, deadline, ct);
            if (unix != null && Encoding.UTF8.GetByteCount(unix.Path) > UnixEndPoint.MaxPathBytes)
                throw new ServerUnavailableException("the socket path " + unix.Path + " is longer than the " + UnixEndPoint.MaxPathBytes
                    + " bytes a Unix socket address holds, and this system has no /proc/self/fd to reach it by a shorter name: "
                    + "use a shorter work folder path, or a session name");
            return ManagedNotifySocket.Open(at, deadline, ct);
        }

        /// <summary>What a connect that timed out says (<see cref="NotAnsweringException.What"/>).</summary>
        internal const string ConnectWhat = "the connection";

        /// <summary>The deadline passed while connecting (the server's listen queue is full, or a TCP connect is not answered).</summary>
        internal static NotAnsweringException ConnectTimedOut(long start, string why)
        {
            double seconds = (Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency;
            return new NotAnsweringException(ConnectWhat, seconds, "the server's socket did not take the connection within "
                + seconds.ToString("0.###", System.Globalization.CultureInfo.InvariantCulture) + " s (" + why + ")");
        }

        /// <summary>Milliseconds left until <paramref name="deadline"/> (int.MaxValue: none), at least 0.</summary>
        internal static int MillisecondsLeft(long deadline)
        {
            if (deadline == long.MaxValue) return int.MaxValue;
            long left = deadline - Stopwatch.GetTimestamp();
            if (left <= 0) return 0;
            double ms = Math.Ceiling(left * 1000.0 / Stopwatch.Frequency);
            return ms >= int.MaxValue ? int.MaxValue : (int)ms;
        }

        /// <summary>Sends all of <paramref name="count"/> bytes; false when the connection is gone.</summary>
        public abstract bool Send(byte[] buffer, int offset, int count);

        /// <summary>Receives up to <paramref name="count"/> bytes; 0 when the peer closed the connection.</summary>
        public abstract int Receive(byte[] buffer, int offset, int count);

        /// <summary>True when a byte (or the end of the stream) can be read within <paramref name="microseconds"/> (-1: forever).</summary>
        public abstract bool Poll(int microseconds);

        /// <summary>Shuts both directions down: a thread blocked in <see cref="Poll"/> wakes up.</summary>
        public abstract void Shutdown();

        /// <summary>Closes the socket (after any call still running on another thread returns).</summary>
        public abstract void Dispose();
    }
}
