using System;
using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace LessPy
{
    /// <summary>A <see cref="Socket"/> (TCP on loopback with NoDelay, or a Unix socket where libc is not used).</summary>
    internal sealed class ManagedNotifySocket : NotifySocket
    {
        readonly Socket _s;

        ManagedNotifySocket(Socket s) { _s = s; }

        /// <summary>Connects until <paramref name="deadline"/> and while <paramref name="ct"/> is not cancelled (see <see cref="NotifySocket.Connect"/>).</summary>
        public static NotifySocket Open(EndPoint at, long deadline, CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            Socket s = at.AddressFamily == AddressFamily.Unix
                ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (at.AddressFamily != AddressFamily.Unix) s.NoDelay = true;
                ConnectBounded(s, at, deadline, ct);
                var ip = at as IPEndPoint;
                if (ip != null && Posix.IsLinux) CheckLoopbackPeer(s, ip);
                return new ManagedNotifySocket(s);
            }
            catch
            {
                s.Dispose();
                throw;
            }
        }

        /// <summary>
        /// Connects <paramref name="s"/> asynchronously and waits for it in 20 ms slices, looking at the token and the
        /// deadline: a connect that does not end in time is given up (closing the socket ends it) and throws.
        /// </summary>
        static void ConnectBounded(Socket s, EndPoint at, long deadline, CancellationToken ct)
        {
            long start = Stopwatch.GetTimestamp();
            IAsyncResult ar = s.BeginConnect(at, null, null);
            bool cancellable = ct.CanBeCanceled;
            while (!ar.IsCompleted)
            {
                int ms = MillisecondsLeft(deadline);
                if (ms == 0 || (cancellable && ct.IsCancellationRequested))
                {
                    s.Close();                                   // ends the pending connect; EndConnect then throws, and is not awaited
                    ct.ThrowIfCancellationRequested();
                    throw ConnectTimedOut(start, "the connect to " + at + " was not answered: the server accepts no connection");
                }
                if (cancellable && ms > 20) ms = 20;
                ar.AsyncWaitHandle.WaitOne(ms);
            }
            s.EndConnect(ar);
        }

        /// <summary>
        /// TCP on Linux (a server of an older version, or one forced to TCP): throws unless the process that listens on
        /// the port runs as this user. SO_PEERCRED is for Unix sockets only; /proc/net/tcp lists the server's end of this
        /// connection (local: the server's port, remote: ours) with the uid of the socket's owner.
        /// </summary>
        static void CheckLoopbackPeer(Socket s, IPEndPoint at)
        {
            var local = s.LocalEndPoint as IPEndPoint;
            if (local == null || !IPAddress.IsLoopback(at.Address) || at.Address.AddressFamily != AddressFamily.InterNetwork) return;
            string table;
            try { table = Posix.ReadAllText("/proc/net/tcp"); }
            catch (System.IO.IOException) { return; }
            catch (UnauthorizedAccessException) { return; }
            string serverEnd = "0100007F:" + at.Port.ToString("X4"), clientEnd = "0100007F:" + local.Port.ToString("X4");
            foreach (string line in table.Split('\n'))
            {
                string[] f = line.Split(new[] { ' ' }, StringSplitOptions.RemoveEmptyEntries);
                uint uid;
                if (f.Length < 8 || f[1] != serverEnd || f[2] != clientEnd || !uint.TryParse(f[7], out uid)) continue;
                uint me = Posix.UserId;
                if (uid == me) return;
                throw new UntrustedWorkFolderException("127.0.0.1:" + at.Port, "the process listening on 127.0.0.1:" + at.Port + " (named by "
                    + "notify.port) runs as " + WorkFolder.UserText(uid) + ", not as you (" + WorkFolder.UserText(me) + "): LessPy talks only "
                    + "to a server of your own and sent it nothing. The folder's server has probably stopped and another user took its "
                    + "port: start the server again");
            }
        }

        public override bool Send(byte[] buffer, int offset, int count)
        {
            try
            {
                while (count > 0)
                {
                    SocketError err;
                    int n = _s.Send(buffer, offset, count, SocketFlags.None, out err);
                    if (n <= 0) return false;
                    offset += n;
                    count -= n;
                }
                return true;
            }
            catch (SocketException) { return false; }
            catch (ObjectDisposedException) { return false; }
        }

        public override int Receive(byte[] buffer, int offset, int count)
        {
            SocketError err;
            int n = _s.Receive(buffer, offset, count, SocketFlags.None, out err);
            return n < 0 ? 0 : n;
        }

        public override bool Poll(int microseconds) { return _s.Poll(microseconds, SelectMode.SelectRead); }

        public override void Shutdown()
        {
            try { _s.Shutdown(SocketShutdown.Both); }
            catch (SocketException) { }
            catch (ObjectDisposedException) { }
        }

        public override void Dispose() { _s.Dispose(); }
    }
}
