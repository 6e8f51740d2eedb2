using System;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace LessPy
{
    /// <summary>
    /// A Unix domain socket address (a path), for <see cref="Socket.Connect(EndPoint)"/> on runtimes without
    /// <c>UnixDomainSocketEndPoint</c> (netstandard2.0, Mono). The serialized form is the address family followed
    /// by the UTF-8 path and a terminating NUL, as <c>sockaddr_un</c> expects.
    /// </summary>
    internal sealed class UnixEndPoint : EndPoint
    {
        /// <summary>sun_path's size on Linux (108) and macOS (104): the longer limit, checked by the OS.</summary>
        internal const int MaxPathBytes = 107;

        /// <summary>
        /// The socket at <paramref name="path"/>. A longer path than a socket address holds is accepted here: on Linux the
        /// client reaches it through /proc/self/fd (<see cref="PosixNotifySocket.Open"/>); elsewhere connecting refuses it.
        /// </summary>
        public UnixEndPoint(string path)
        {
            if (path == null) throw new ArgumentNullException(nameof(path));
            Path = path;
        }

        public string Path { get; }

        public override AddressFamily AddressFamily { get { return AddressFamily.Unix; } }

        public override SocketAddress Serialize()
        {
            byte[] bytes = Encoding.UTF8.GetBytes(Path);
            var sa = new SocketAddress(AddressFamily.Unix, 2 + bytes.Length + 1);
            for (int i = 0; i < bytes.Length; i++) sa[2 + i] = bytes[i];
            sa[2 + bytes.Length] = 0;
            return sa;
        }

        public override EndPoint Create(SocketAddress socketAddress)
        {
            int n = socketAddress.Size - 2;
            var bytes = new byte[Math.Max(0, n)];
            int len = 0;
            for (; len < bytes.Length; len++)
            {
                byte b = socketAddress[2 + len];
                if (b == 0) break;
                bytes[len] = b;
            }
            return new UnixEndPoint(Encoding.UTF8.GetString(bytes, 0, len));
        }

        public override string ToString() { return Path; }
    }
}
