using System;
using System.Diagnostics;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using Microsoft.Win32.SafeHandles;

namespace LessPy
{
    /// <summary>
    /// A Unix stream socket through libc (Linux). The descriptor is a <see cref="SafeHandle"/>, so closing it while
    /// another thread is inside poll or recv waits for that call to return: the number is never reused under it.
    /// </summary>
    internal sealed unsafe class PosixNotifySocket : NotifySocket
    {
        const int AF_UNIX = 1, SOCK_STREAM = 1, SOCK_CLOEXEC = 0x80000, SHUT_RDWR = 2, MSG_NOSIGNAL = 0x4000;
        /// <summary>O_NONBLOCK (and SOCK_NONBLOCK): 04000 on x86, ARM and asm-generic Linux.</summary>
        const int SOCK_NONBLOCK = 0x800, O_NONBLOCK = 0x800, F_GETFL = 3, F_SETFL = 4;
        const short POLLIN = 1, POLLOUT = 4;
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
        [DllImport("libc", SetLastError = true)] static extern int fcntl(Fd fd, int cmd, int arg);

        const int SOL_SOCKET = 1, SO_PEERCRED = 17, SO_ERROR = 4;

        /// <summary>Linux, with libc reachable through P/Invoke.</summary>
        public static bool Usable { get { return Posix.IsLinux; } }

        readonly Fd _fd;
        int _shut;

        PosixNotifySocket(Fd fd) { _fd = fd; }

        /// <summary>
        /// Connects to the Unix socket <paramref name="path"/> in a work folder and checks who answers. The folder is opened
        /// first (O_PATH, never through a link) and checked (<see cref="WorkFolder.OpenChecked"/>); a path too long for a
        /// socket address is reached as /proc/self/fd/N/notify.sock through that descriptor (PROTOCOL.md section 1). Once
        /// connected, the server's uid (SO_PEERCRED) must be this user's. The connect never blocks: see <see cref="ConnectTo"/>.
        /// </summary>
        /// <exception cref="UntrustedWorkFolderException">The folder is not this user's own and private, or another user's process answers.</exception>
        public static NotifySocket Open(string path, long deadline, CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            string folderPath = System.IO.Path.GetDirectoryName(path);
            var folder = new WorkFolder(folderPath);
            int dirfd = folder.OpenChecked(false);
            NotifySocket s;
            try
            {
                string target = path;
                if (Encoding.UTF8.GetByteCount(path) >= SunPathBytes)
                    target = "/proc/self/fd/" + dirfd + "/" + System.IO.Path.GetFileName(path);
                s = ConnectTo(target, path, deadline, ct);
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

        /// <summary>
        /// Connects a non-blocking socket, so that the connect honours <paramref name="deadline"/> and <paramref name="ct"/>:
        /// EAGAIN (a Unix socket whose listen queue is full: the server accepts nothing, being stopped or busy) is retried
        /// after a short sleep; EINPROGRESS is waited for with poll. The socket is made blocking again once connected.
        /// </summary>
        static NotifySocket ConnectTo(string path, string shownPath, long deadline, CancellationToken ct)
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
            long start = Stopwatch.GetTimestamp();
            Fd fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
            if (fd.IsInvalid) throw Error("socket");
            try
            {
                int sleepMs = 1, interrupted = 0;
                while (true)
                {
                    if (connect(fd, addr, len) == 0) break;
                    int errno = Marshal.GetLastWin32Error();
                    if (errno == Posix.EISCONN) break;                 // a retry after an interrupted connect that went through
                    if (errno == Posix.EINTR && ++interrupted <= 3) continue;
                    if (errno == Posix.EINPROGRESS || errno == Posix.EALREADY)
                    {
                        AwaitConnected(fd, start, deadline, ct, shownPath);
                        break;
                    }
                    if (errno != Posix.EAGAIN) throw Error("connect to " + shownPath, errno);
                    // the listen queue is full: the server accepts no connection now. Try again shortly, until the deadline
                    ct.ThrowIfCancellationRequested();
                    int ms = MillisecondsLeft(deadline);
                    if (ms == 0)
                        throw ConnectTimedOut(start, "its queue of connections waiting to be accepted is full: the server accepts none");
                    Thread.Sleep(Math.Min(sleepMs, ms));
                    if (sleepMs < 10) sleepMs *= 2;
                }
                int flags = fcntl(fd, F_GETFL, 0);
                if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) throw Error("fcntl(O_NONBLOCK)");
                return new PosixNotifySocket(fd);
            }
            catch
            {
                fd.Dispose();
                throw;
            }
        }

        /// <summary>Waits (poll for writable) for a connect in progress to finish, until the deadline or the token.</summary>
        static void AwaitConnected(Fd fd, long start, long deadline, CancellationToken ct, string shownPath)
        {
            bool cancellable = ct.CanBeCanceled;
            var p = new PollFd { fd = (int)fd.DangerousGetHandle(), events = POLLOUT };
            while (true)
            {
                ct.ThrowIfCancellationRequested();
                int ms = MillisecondsLeft(deadline);
                if (ms == 0) throw ConnectTimedOut(start, "the connect was not answered: the server accepts no connection");
                if (ms == int.MaxValue && !cancellable) ms = -1;
                else if (cancellable && ms > 20) ms = 20;
                p.revents = 0;
                int r = poll(&p, (UIntPtr)1, ms);
                if (r < 0)
                {
                    int errno = Marshal.GetLastWin32Error();
                    if (errno == Posix.EINTR) continue;
                    throw Error("poll", errno);
                }
                if (r == 0) continue;
                int err = 0, errLen = 4;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, (byte*)&err, ref errLen) != 0) throw Error("getsockopt(SO_ERROR)");
                if (err != 0) throw Error("connect to " + shownPath, err);
                return;
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
                            if (errno == Posix.EINTR || errno == Posix.EAGAIN) continue;
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
                    if (errno == Posix.EINTR) continue;
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
                    if (errno != Posix.EINTR) throw Error("poll", errno);
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
