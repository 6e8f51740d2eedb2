using System;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// The notify socket's address and the handshake (PROTOCOL.md section 3): the hello, the answer with its HMAC, the
    /// result. Used by every connection to a server: a lane (<see cref="Lane.Open"/>), a probe and a stop request
    /// (<see cref="Probe"/>).
    /// </summary>
    internal static class Handshake
    {
        /// <summary>The address of the folder's notify socket: a Unix socket when notify.port says "unix", else TCP on loopback.</summary>
        public static EndPoint NotifyEndPoint(WorkFolder folder)
        {
            string text;
            try { text = WorkFolder.ReadText(folder.File(WorkFolder.PortFile)).Trim(); }
            catch (IOException) { text = null; }
            catch (UnauthorizedAccessException) { text = null; }
            if (text == null) throw new ServerUnavailableException(folder.NotServedMessage());
            if (text == Wire.UnixPortText) return new UnixEndPoint(folder.File(Wire.SocketFile));
            return LoopbackEndPoint(folder, text);
        }

        /// <summary>
        /// The TCP address notify.port names. Apart from <see cref="NotifyEndPoint"/> so that compiling that (on the Unix
        /// socket path) does not initialise IPAddress.
        /// </summary>
        static EndPoint LoopbackEndPoint(WorkFolder folder, string text)
        {
            int port;
            if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out port) && port > 0 && port <= 65535)
                return new IPEndPoint(IPAddress.Loopback, port);
            throw new ServerUnavailableException(folder.File(WorkFolder.PortFile) + " holds '" + text + "', neither \"unix\" nor a port number: "
                + "it was not written by a lesspy server of protocol version " + Wire.Version);
        }

        /// <summary>The notify socket's address as a message shows it.</summary>
        internal static string Describe(EndPoint at)
        {
            var ip = at as IPEndPoint;
            return ip != null ? "127.0.0.1:" + ip.Port : at.ToString();
        }

        /// <summary>The handshake's own time from now (a Stopwatch timestamp): for waits that have no CallTimeout (the first lane, probes, a stop request).</summary>
        internal static long DefaultDeadline() { return Stopwatch.GetTimestamp() + WaitTimings.HandshakeTicks; }

        /// <summary>
        /// Reads the hello, checks it, and sends the answer (PROTOCOL.md section 3 steps 1 and 2), waiting until
        /// <paramref name="deadline"/> (a Stopwatch timestamp; long.MaxValue: no limit) and while <paramref name="ct"/> is not cancelled.
        /// </summary>
        public static Hello Exchange(NotifySocket s, EndPoint at, byte[] key, Purpose purpose, ulong clientId, long deadline, CancellationToken ct)
        {
            var hello = new byte[Wire.HelloSize];
            ReadExact(s, hello, 0, Wire.HelloOffSession, "the server's hello", deadline, ct);
            if (hello[0] != 'L' || hello[1] != 'S' || hello[2] != 'P' || hello[3] != 'Y')
                throw new ProtocolException(Describe(at) + " is not a lesspy server (its hello does not start with LSPY)");
            var h = new Hello();
            h.Version = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hello, Wire.HelloOffVersion, 2));
            if (h.Version != Wire.Version)
                throw new HandshakeException("the server speaks protocol version " + h.Version + " and this client version " + Wire.Version
                    + ": use the LessPy C# client that comes with the server's lesspy-kernel package", (int)HandshakeResult.UnsupportedVersion);
            ReadExact(s, hello, Wire.HelloOffSession, Wire.HelloSize - Wire.HelloOffSession, "the server's hello", deadline, ct);
            h.Mode = (ServerMode)BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hello, Wire.HelloOffMode, 2));
            h.Session = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(hello, Wire.HelloOffSession, 8));
            byte[] mac;
            using (var hmac = new HMACSHA256(key)) mac = hmac.ComputeHash(hello, Wire.HelloOffNonce, Wire.NonceSize);

            var answer = new byte[Wire.AnswerSize];
            answer[0] = (byte)'L'; answer[1] = (byte)'S'; answer[2] = (byte)'P'; answer[3] = (byte)'Y';
            BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(answer, Wire.AnswerOffVersion, 2), Wire.Version);
            BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(answer, Wire.AnswerOffPurpose, 2), (ushort)purpose);
            BinaryPrimitives.WriteUInt32LittleEndian(new Span<byte>(answer, Wire.AnswerOffPid, 4), (uint)CurrentPid);
            BinaryPrimitives.WriteUInt64LittleEndian(new Span<byte>(answer, Wire.AnswerOffClientId, 8), clientId);
            Buffer.BlockCopy(mac, 0, answer, Wire.AnswerOffMac, Wire.MacSize);
            if (!s.Send(answer, 0, answer.Length)) throw new ServerUnavailableException("the server closed the connection during the handshake");
            return h;
        }

        /// <summary>
        /// Reads the result and its message (section 3 step 3), waiting until <paramref name="deadline"/> and while
        /// <paramref name="ct"/> is not cancelled; returns the message of an accepted connection, throws otherwise.
        /// </summary>
        public static byte[] ReadResult(NotifySocket s, EndPoint at, WorkFolder folder, long deadline, CancellationToken ct)
        {
            var head = new byte[Wire.ResultSize];
            ReadExact(s, head, 0, Wire.ResultSize, "the handshake result", deadline, ct);
            int len = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(head, Wire.ResultOffMessageLength, 2));
            var msg = new byte[len];
            if (len > 0) ReadExact(s, msg, 0, len, "the handshake message", deadline, ct);
            byte code = head[Wire.ResultOffResult];
            var result = (HandshakeResult)code;
            if (result == HandshakeResult.Accepted) return msg;
            string text = Encoding.UTF8.GetString(msg);
            string tail = text.Length > 0 ? ": " + text : "";
            switch (result)
            {
                case HandshakeResult.WrongKey:
                    throw new HandshakeException("the server refused the session key of " + folder.File(WorkFolder.KeyFile) + tail
                        + " (wrong session key: the file changed, or another server answers on " + Describe(at) + ")", code, text);
                case HandshakeResult.UnsupportedVersion:
                    throw new HandshakeException("the server does not support protocol version " + Wire.Version + tail, code, text);
                case HandshakeResult.Busy:
                    throw new HandshakeException("the server of " + folder.Path + " is busy" + (text.Length > 0 ? ": " + text : " (it serves its limit of clients or lanes)"), code, text);
                default:
                    throw new HandshakeException("the server refused the connection (result " + code + ")" + tail, code, text);
            }
        }

        static int _pid;
        /// <summary>This process's id (through libc on Linux: System.Diagnostics.Process is slow to start on Mono).</summary>
        internal static int CurrentPid
        {
            get
            {
                if (_pid == 0)
                {
                    if (Posix.IsLinux) _pid = Posix.ProcessId;
                    else using (var p = Process.GetCurrentProcess()) _pid = p.Id;
                }
                return _pid;
            }
        }

        /// <summary>
        /// Reads exactly <paramref name="n"/> bytes, until <paramref name="deadline"/> (a Stopwatch timestamp, long.MaxValue:
        /// none); a cancellable <paramref name="ct"/> is looked at every <see cref="WaitTimings.CancelSliceMicroseconds"/>. A server that accepted the connection (the
        /// kernel does that for it) but sends nothing is alive but not answering, or gone: the caller tells which.
        /// </summary>
        static void ReadExact(NotifySocket s, byte[] buf, int offset, int n, string what, long deadline, CancellationToken ct)
        {
            long start = Stopwatch.GetTimestamp();
            bool cancellable = ct.CanBeCanceled;
            int got = 0;
            while (got < n)
            {
                ct.ThrowIfCancellationRequested();
                int us;
                if (deadline == long.MaxValue) us = -1;
                else
                {
                    long left = deadline - Stopwatch.GetTimestamp();
                    if (left <= 0)
                        throw new NotAnsweringException(what, (Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency);
                    double micro = left * 1e6 / Stopwatch.Frequency;
                    us = micro >= int.MaxValue ? int.MaxValue : Math.Max(1, (int)micro);
                }
                if (cancellable && (us < 0 || us > WaitTimings.CancelSliceMicroseconds)) us = WaitTimings.CancelSliceMicroseconds;
                bool ready;
                try { ready = s.Poll(us); }
                catch (SocketException e) { throw new ServerUnavailableException("the connection failed before the server sent " + what + ": " + e.Message, e); }
                if (!ready) continue;
                int r;
                try { r = s.Receive(buf, offset + got, n - got); }
                catch (SocketException e) { throw new ServerUnavailableException("the connection failed before the server sent " + what + ": " + e.Message, e); }
                if (r <= 0) throw new ServerUnavailableException("the server closed the connection before sending " + what);
                got += r;
            }
        }
    }
}
