using System;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using Microsoft.Win32.SafeHandles;

namespace LessPy
{
    /// <summary>
    /// The byte stream to a server's notify socket (a lane's wake-up bytes, the handshake, probes).
    /// On Linux the Unix socket is driven through libc directly: Mono's <see cref="Socket"/> reads machine.config and
    /// the network interfaces the first time it is used (about 50 ms here), which a fresh process paid on every
    /// Connect and Initialize. TCP (long folder paths, Windows) and other systems use <see cref="Socket"/>.
    /// Errors are <see cref="SocketException"/>s and a disposed socket throws <see cref="ObjectDisposedException"/>,
    /// as with <see cref="Socket"/>.
    /// </summary>
    internal abstract class NotifySocket : IDisposable
    {
        /// <summary>Connects to <paramref name="at"/> (a <see cref="UnixEndPoint"/> or a loopback <see cref="IPEndPoint"/>).</summary>
        public static NotifySocket Connect(EndPoint at)
        {
            var unix = at as UnixEndPoint;
            if (unix != null && PosixNotifySocket.Usable) return PosixNotifySocket.Open(unix.Path);
            if (unix != null && Encoding.UTF8.GetByteCount(unix.Path) > UnixEndPoint.MaxPathBytes)
                throw new ServerUnavailableException("the socket path " + unix.Path + " is longer than the " + UnixEndPoint.MaxPathBytes
                    + " bytes a Unix socket address holds, and this system has no /proc/self/fd to reach it by a shorter name: "
                    + "use a shorter work folder path, or a session name");
            return ManagedNotifySocket.Open(at);
        }

        /// <summary>True when <see cref="Connect"/> never touches <see cref="Socket"/> for this address (no warm-up needed).</summary>
        public static bool AvoidsManagedSockets(EndPoint at) { return at is UnixEndPoint && PosixNotifySocket.Usable; }

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

    /// <summary>A <see cref="Socket"/> (TCP on loopback with NoDelay, or a Unix socket where libc is not used).</summary>
    internal sealed class ManagedNotifySocket : NotifySocket
    {
        readonly Socket _s;

        ManagedNotifySocket(Socket s) { _s = s; }

        public static NotifySocket Open(EndPoint at)
        {
            Socket s = at.AddressFamily == AddressFamily.Unix
                ? new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified)
                : new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (at.AddressFamily != AddressFamily.Unix) s.NoDelay = true;
                s.Connect(at);
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

    /// <summary>
    /// A Unix stream socket through libc (Linux). The descriptor is a <see cref="SafeHandle"/>, so closing it while
    /// another thread is inside poll or recv waits for that call to return: the number is never reused under it.
    /// </summary>
    internal sealed unsafe class PosixNotifySocket : NotifySocket
    {
        const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000, SHUT_RDWR = 2, MSG_NOSIGNAL = 0x4000;
        const short POLLIN = 1;
        const int EINTR = 4, EAGAIN = 11;
        const int SunPathBytes = 108;

        sealed class Fd : SafeHandleZeroOrMinusOneIsInvalid
        {
            public Fd() : base(true) { }
            protected override bool ReleaseHandle() { return close((int)handle) == 0; }
        }

        [StructLayout(LayoutKind.Sequential)]
        struct PollFd
        {
            public int fd;
            public short events;
            public short revents;
        }

        [DllImport("libc", SetLastError = true)] static extern Fd socket(int domain, int type, int protocol);
        [DllImport("libc", SetLastError = true)] static extern int connect(Fd fd, byte* addr, int addrlen);
        [DllImport("libc", SetLastError = true)] static extern IntPtr send(Fd fd, byte* buf, IntPtr len, int flags);
        [DllImport("libc", SetLastError = true)] static extern IntPtr recv(Fd fd, byte* buf, IntPtr len, int flags);
        [DllImport("libc", SetLastError = true)] static extern int poll(PollFd* fds, UIntPtr nfds, int timeout);
        [DllImport("libc", SetLastError = true)] static extern int shutdown(Fd fd, int how);
        [DllImport("libc", SetLastError = true)] static extern int close(int fd);
        [DllImport("libc")] static extern IntPtr strerror(int errnum);
        [DllImport("libc", SetLastError = true)] static extern int getsockopt(Fd fd, int level, int optname, byte* optval, ref int optlen);

        const int SOL_SOCKET = 1, SO_PEERCRED = 17;

        /// <summary>Linux, with libc reachable through P/Invoke.</summary>
        public static bool Usable { get { return Posix.IsLinux; } }

        readonly Fd _fd;
        int _shut;

        PosixNotifySocket(Fd fd) { _fd = fd; }

        /// <summary>
        /// Connects to the Unix socket <paramref name="path"/> in a work folder and checks who answers. The folder is opened
        /// first (O_PATH, never through a link) and checked (<see cref="WorkFolder.OpenChecked"/>); a path too long for a
        /// socket address is reached as /proc/self/fd/N/notify.sock through that descriptor (PROTOCOL.md section 1). Once
        /// connected, the server's uid (SO_PEERCRED) must be this user's.
        /// </summary>
        /// <exception cref="UntrustedWorkFolderException">The folder is not this user's own and private, or another user's process answers.</exception>
        public static NotifySocket Open(string path)
        {
            string folderPath = System.IO.Path.GetDirectoryName(path);
            var folder = new WorkFolder(folderPath);
            int dirfd = folder.OpenChecked(false);
            NotifySocket s;
            try
            {
                string target = path;
                if (Encoding.UTF8.GetByteCount(path) >= SunPathBytes)
                    target = "/proc/self/fd/" + dirfd + "/" + System.IO.Path.GetFileName(path);
                s = ConnectTo(target, path);
            }
            finally { Posix.Close(dirfd); }
            try
            {
                ((PosixNotifySocket)s).CheckPeer(folderPath);
                return s;
            }
            catch
            {
                s.Dispose();
                throw;
            }
        }

        /// <summary>Throws unless the process at the other end runs as this user (SO_PEERCRED).</summary>
        void CheckPeer(string folderPath)
        {
            byte* cred = stackalloc byte[12];                    // struct ucred: pid, uid, gid
            int len = 12;
            if (getsockopt(_fd, SOL_SOCKET, SO_PEERCRED, cred, ref len) != 0 || len < 12) throw Error("getsockopt(SO_PEERCRED)");
            int pid = *(int*)cred;
            uint uid = *(uint*)(cred + 4);
            uint me = Posix.UserId;
            if (uid != me)
                throw new UntrustedWorkFolderException(folderPath, "the process answering on the notify socket of " + folderPath + " (pid " + pid
                    + ") runs as " + WorkFolder.UserText(uid) + ", not as you (" + WorkFolder.UserText(me) + "): LessPy talks only to a server "
                    + "of your own and sent it nothing. Stop that process, or use a work folder of your own");
        }

        static NotifySocket ConnectTo(string path, string shownPath)
        {
            byte[] name = Encoding.UTF8.GetBytes(path);
            if (name.Length >= SunPathBytes)
                throw new ServerUnavailableException("the socket path " + shownPath + " is longer than the " + (SunPathBytes - 1)
                    + " bytes a Unix socket address holds: use a shorter work folder path");
            byte* addr = stackalloc byte[2 + SunPathBytes];
            for (int i = 0; i < 2 + SunPathBytes; i++) addr[i] = 0;
            addr[0] = AF_UNIX;                                   // sa_family_t, little-endian u16
            for (int i = 0; i < name.Length; i++) addr[2 + i] = name[i];
            int len = 2 + name.Length + 1;
            for (int attempt = 0; ; attempt++)
            {
                Fd fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
                if (fd.IsInvalid) throw Error("socket");
                if (connect(fd, addr, len) == 0) return new PosixNotifySocket(fd);
                int errno = Marshal.GetLastWin32Error();
                fd.Dispose();
                if (errno != EINTR || attempt >= 3) throw Error("connect to " + shownPath, errno);
            }
        }

        public override bool Send(byte[] buffer, int offset, int count)
        {
            if (offset < 0 || count < 0 || offset + count > buffer.Length) throw new ArgumentOutOfRangeException(nameof(count));
            try
            {
                fixed (byte* b = buffer)
                {
                    while (count > 0)
                    {
                        long n = (long)send(_fd, b + offset, (IntPtr)count, MSG_NOSIGNAL);
                        if (n < 0)
                        {
                            int errno = Marshal.GetLastWin32Error();
                            if (errno == EINTR || errno == EAGAIN) continue;
                            return false;
                        }
                        if (n == 0) return false;
                        offset += (int)n;
                        count -= (int)n;
                    }
                }
                return true;
            }
            catch (ObjectDisposedException) { return false; }
        }

        public override int Receive(byte[] buffer, int offset, int count)
        {
            if (offset < 0 || count < 0 || offset + count > buffer.Length) throw new ArgumentOutOfRangeException(nameof(count));
            fixed (byte* b = buffer)
            {
                while (true)
                {
                    long n = (long)recv(_fd, b + offset, (IntPtr)count, 0);
                    if (n >= 0) return (int)n;
                    int errno = Marshal.GetLastWin32Error();
                    if (errno == EINTR) continue;
                    if (Volatile.Read(ref _shut) != 0) return 0;
                    throw Error("recv", errno);
                }
            }
        }

        public override bool Poll(int microseconds)
        {
            int ms = microseconds < 0 ? -1 : (int)Math.Min(int.MaxValue, ((long)microseconds + 999) / 1000);
            bool added = false;
            try
            {
                _fd.DangerousAddRef(ref added);
                var p = new PollFd { fd = (int)_fd.DangerousGetHandle(), events = POLLIN };
                while (true)
                {
                    int r = poll(&p, (UIntPtr)1, ms);
                    if (r >= 0) return r > 0;      // readable, closed (POLLHUP) or in error: a read says which
                    int errno = Marshal.GetLastWin32Error();
                    if (errno != EINTR) throw Error("poll", errno);
                }
            }
            finally
            {
                if (added) _fd.DangerousRelease();
            }
        }

        public override void Shutdown()
        {
            Volatile.Write(ref _shut, 1);
            try { shutdown(_fd, SHUT_RDWR); }
            catch (ObjectDisposedException) { }
        }

        public override void Dispose() { _fd.Dispose(); }

        static SocketException Error(string what) { return Error(what, Marshal.GetLastWin32Error()); }

        static SocketException Error(string what, int errno) { return new PosixSocketException(what, errno); }

        /// <summary>A failed libc call, with the system's own words for its errno.</summary>
        sealed class PosixSocketException : SocketException
        {
            readonly string _message;

            public PosixSocketException(string what, int errno)
            {
                string text = null;
                try { text = Marshal.PtrToStringAnsi(strerror(errno)); }
                catch (Exception) { }
                _message = what + ": " + (text ?? "error") + " (errno " + errno + ")";
            }

            public override string Message { get { return _message; } }
        }
    }
}
