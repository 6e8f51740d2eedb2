using System.Diagnostics;

namespace LessPy
{
    /// <summary>
    /// How long the client waits, and how: every timing of a lane's reply wait and of the handshake, in one place (the
    /// parity test reads <see cref="SpinTicks"/> and <see cref="YieldTicks"/> by name).
    /// </summary>
    internal static class WaitTimings
    {
        /// <summary>
        /// Spin on the response sequence this long, then yield the CPU between looks. A yield returns at once when no
        /// other thread wants this CPU (then it is a spin that costs a system call), and hands the CPU over when the
        /// server shares it, which a pure spin would hold for its whole length (on 2 CPUs that happens often).
        /// </summary>
        internal static readonly long SpinTicks = Stopwatch.Frequency / 200000;          // 5 µs
        /// <summary>How long to look (yielding) after the spin, before blocking on the socket.</summary>
        internal static readonly long YieldTicks = Stopwatch.Frequency / 4000;           // 250 µs
        /// <summary>While a cancellable wait blocks on the socket, it wakes this often to look at its token.</summary>
        internal const int CancelSliceMicroseconds = 20000;
        /// <summary>How long a connection without a CallTimeout (the first lane, a probe, a stop request) waits for the handshake.</summary>
        internal static readonly long HandshakeTicks = 10 * Stopwatch.Frequency;
    }
}
