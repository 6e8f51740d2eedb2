using System.Net.Sockets;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// Start-up work the runtime does once per process, begun early on another thread so that it overlaps with
    /// binding the interface. Mono initialises its socket layer on the first Socket (reading the network
    /// configuration); a Connect that starts it first and binds meanwhile pays much less of it.
    /// Where the notify socket is driven through libc (<see cref="PosixNotifySocket"/>, Linux) no Socket is made at
    /// all, so there is nothing to warm up.
    /// </summary>
    internal static class WarmUp
    {
        static int _started;

        public static void Sockets()
        {
            if (Interlocked.Exchange(ref _started, 1) != 0 || PosixNotifySocket.Usable) return;
            var t = new Thread(() =>
            {
                try { bool unused = Socket.OSSupportsIPv4; }
                catch (System.Exception) { }     // the real connect reports any problem
            });
            t.IsBackground = true;
            t.Name = "LessPy warm-up";
            t.Start();
        }
    }
}
