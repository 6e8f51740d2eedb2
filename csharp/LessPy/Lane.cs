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
    /// <summary>Where a lane is in the pool (guarded by the owning <see cref="Channel"/>'s lock).</summary>
    internal enum LaneState
    {
        /// <summary>Idle: any thread may take it.</summary>
        Free,
        /// <summary>A call is being written, or waits for its reply.</summary>
        Busy,
        /// <summary>The call is done and its result has views over the response file: kept for the holder thread.</summary>
        Held,
        /// <summary>A call was abandoned (cancelled or timed out): reused once its late reply has arrived.</summary>
        SetAside,
    }

    /// <summary>How waiting for a reply ended.</summary>
    internal enum WaitOutcome
    {
        Arrived,
        TimedOut,
        Cancelled,
        Closed,
    }

    /// <summary>What the server said in its hello.</summary>
    internal struct Hello
    {
        public ushort Version;
        public ServerMode Mode;
        public ulong Session;
    }

    /// <summary>
    /// One lane (PROTOCOL.md section 2): a notify connection, the lane's request and response mappings, and its
    /// call sequence. A lane carries one call at a time; the pool fields are guarded by the channel's lock, the
    /// rest is used only by the thread that holds the lane as <see cref="LaneState.Busy"/>.
    /// </summary>
    internal sealed unsafe class Lane
    {
        static readonly byte[] CallByte = { Wire.NotifyCall };
        static readonly byte[] ShutdownByte = { Wire.NotifyShutdown };
        static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);
        /// <summary>
        /// Spin on the response sequence this long, then yield the CPU between looks. A yield returns at once when no
        /// other thread wants this CPU (then it is a spin that costs a system call), and hands the CPU over when the
        /// server shares it, which a pure spin would hold for its whole length (on 2 CPUs that happens often).
        /// </summary>
        static readonly long SpinTicks = Stopwatch.Frequency / 200000;           // 5 µs
        /// <summary>How long to look (yielding) before blocking on the socket.</summary>
        static readonly long YieldTicks = Stopwatch.Frequency / 4000;            // 250 µs more
        /// <summary>While a cancellable call blocks, it wakes this often to look at its token.</summary>
        const int CancelSliceMicroseconds = 20000;

        readonly NotifySocket _socket;
        readonly byte[] _drain = new byte[64];                   // receives notify bytes; only the Busy thread uses it
        ulong _sequence;

        public readonly int Id;
        public readonly Mapping Request;
        public readonly Mapping Response;
        /// <summary>Result views over the response file are valid while this has the value they were made with.</summary>
        public readonly ViewGeneration Results = new ViewGeneration();
        /// <summary>In-place request arrays are writable while this has the value they were made with.</summary>
        public readonly ViewGeneration Requests = new ViewGeneration();
        public readonly ulong Session;

        // ---- pool bookkeeping, guarded by the channel's lock
        public LaneState State;
        public Thread Holder;           // Held (and the thread of a Busy call): whose result views live here
        public Thread LastThread;       // the thread that used it last: preferred when it calls again
        public long LastUsed;           // Stopwatch timestamp of the last reply
        public ulong Abandoned;         // SetAside: the sequence of the abandoned call
        public bool CloseWhenDone;      // Dispose or a server change came while a call was running
        public long InPlaceLow = -1;    // the lowest payload offset of this call's in-place request arrays, -1 none
        public bool Closed;
        public Thread Encoder;          // the thread writing a call frame into the request file right now, else null
        public long SentEnd;            // the end of the highest in-place request array the frame being written sends
        public bool KeepsViews;         // Busy for a thread that holds lanes: their views stay valid until this call is published
        public int SentLength;          // the payload length of the last request published
        public bool ResultsInRequest;   // Held: a result view lies in the request file, so no call may be written there until it is released
        public string StreamName;       // Busy with an open stream (IEnumerable<T>): the Python function's name, else null
        public bool StreamParked;       // an open stream's item has arrived and its enumerator has not asked for the next one
        public volatile bool StreamAbandoned;   // the open stream's enumerator was garbage-collected undisposed (its finalizer says so)

        Lane(int id, NotifySocket socket, Mapping req, Mapping resp, ulong session)
        {
            Id = id;
            _socket = socket;
            Request = req;
            Response = resp;
            Session = session;
        }

        // ---------------------------------------------------------------- opening

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

        /// <summary>
        /// Connects to the folder's server; the socket is connected, nothing is read yet. The connect itself waits until
        /// <paramref name="deadline"/> (a Stopwatch timestamp; long.MaxValue: no limit) and while <paramref name="ct"/> is not
        /// cancelled: a stopped or busy server's full listen queue would hold a blocking connect until it resumes.
        /// </summary>
        /// <exception cref="NotAnsweringException">The deadline passed before the server's socket took the connection.</exception>
        /// <exception cref="OperationCanceledException"><paramref name="ct"/> was cancelled meanwhile.</exception>
        public static NotifySocket Connect(EndPoint at, long deadline, CancellationToken ct) { return NotifySocket.Connect(at, deadline, ct); }

        /// <summary>Opens a lane: connect, handshake with purpose 0, map the two files and check their session id.</summary>
        /// <exception cref="HandshakeException">The server refused (wrong key, version, busy: its message says which limit).</exception>
        /// <exception cref="ServerUnavailableException">Nothing answers, or the server went away during the handshake.</exception>
        public static Lane Open(WorkFolder folder, byte[] key, ulong clientId, out Hello hello)
        {
            return Open(folder, key, clientId, out hello, Stopwatch.GetTimestamp() + (long)(HandshakeTimeout.TotalSeconds * Stopwatch.Frequency),
                CancellationToken.None);
        }

        /// <summary>
        /// As <see cref="Open(WorkFolder, byte[], ulong, out Hello)"/>, waiting for the server's handshake until
        /// <paramref name="deadline"/> (a Stopwatch timestamp; long.MaxValue: no limit) and while <paramref name="ct"/> is
        /// not cancelled.
        /// </summary>
        /// <exception cref="NotAnsweringException">The deadline passed before the server took the connection or sent its part of the handshake.</exception>
        /// <exception cref="OperationCanceledException"><paramref name="ct"/> was cancelled meanwhile.</exception>
        public static Lane Open(WorkFolder folder, byte[] key, ulong clientId, out Hello hello, long deadline, CancellationToken ct)
        {
            EndPoint at = NotifyEndPoint(folder);
            NotifySocket s;
            try { s = Connect(at, deadline, ct); }
            catch (SocketException e)
            {
                throw new ServerUnavailableException("no lesspy server answers on " + Describe(at) + " (from " + folder.File(WorkFolder.PortFile)
                    + "): " + e.Message + ". The server has stopped: start it again", e);
            }
            Mapping req = null, resp = null;
            try
            {
                hello = Handshake(s, at, key, Purpose.OpenLane, clientId, deadline, ct);
                byte[] answer = ReadResult(s, at, folder, deadline, ct);
                if (answer.Length != 4) throw new ProtocolException("the server accepted the lane but sent " + answer.Length + " bytes, not a u32 lane id");
                int id = (int)BinaryPrimitives.ReadUInt32LittleEndian(answer);
                string reqPath = folder.File(Wire.LaneFile(id, Wire.LaneRequestSuffix));
                string respPath = folder.File(Wire.LaneFile(id, Wire.LaneResponseSuffix));
                try
                {
                    if (Posix.Is64BitLinux)
                    {
                        // opened through the checked folder's descriptor and checked (issue 14): no path is looked up again
                        req = Mapping.Open(reqPath, hello.Session, folder.OpenFile(Wire.LaneFile(id, Wire.LaneRequestSuffix), true, false));
                        resp = Mapping.Open(respPath, hello.Session, folder.OpenFile(Wire.LaneFile(id, Wire.LaneResponseSuffix), true, false));
                    }
                    else
                    {
                        folder.CheckFile(Wire.LaneFile(id, Wire.LaneRequestSuffix));       // this user's own and private (issue 14)
                        folder.CheckFile(Wire.LaneFile(id, Wire.LaneResponseSuffix));
                        req = Mapping.Open(reqPath, hello.Session);
                        resp = Mapping.Open(respPath, hello.Session);
                    }
                }
                catch (IOException e)
                {
                    throw new ServerUnavailableException("cannot map the files of lane " + id + " in " + folder.Path + ": " + e.Message, e);
                }
                return new Lane(id, s, req, resp, hello.Session);
            }
            catch
            {
                if (req != null) req.Dispose();
                if (resp != null) resp.Dispose();
                s.Dispose();
                throw;
            }
        }

        static string Describe(EndPoint at)
        {
            var ip = at as IPEndPoint;
            return ip != null ? "127.0.0.1:" + ip.Port : at.ToString();
        }

        /// <summary>Reads the hello, checks it, and sends the answer (PROTOCOL.md section 3 steps 1 and 2).</summary>
        public static Hello Handshake(NotifySocket s, EndPoint at, byte[] key, Purpose purpose, ulong clientId)
        {
            return Handshake(s, at, key, purpose, clientId, DefaultDeadline(), CancellationToken.None);
        }

        /// <summary>The handshake's own 10 s from now (a Stopwatch timestamp): for waits that have no CallTimeout (probes, a stop request).</summary>
        internal static long DefaultDeadline() { return Stopwatch.GetTimestamp() + (long)(HandshakeTimeout.TotalSeconds * Stopwatch.Frequency); }

        /// <summary>As <see cref="Handshake(NotifySocket, EndPoint, byte[], Purpose, ulong)"/>, waiting until <paramref name="deadline"/> and while <paramref name="ct"/> is not cancelled.</summary>
        public static Hello Handshake(NotifySocket s, EndPoint at, byte[] key, Purpose purpose, ulong clientId, long deadline, CancellationToken ct)
        {
            var hello = new byte[Wire.HelloSize];
            ReadExact(s, hello, 0, 8, "the server's hello", deadline, ct);
            if (hello[0] != 'L' || hello[1] != 'S' || hello[2] != 'P' || hello[3] != 'Y')
                throw new ProtocolException(Describe(at) + " is not a lesspy server (its hello does not start with LSPY)");
            var h = new Hello();
            h.Version = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hello, 4, 2));
            if (h.Version != Wire.Version)
                throw new HandshakeException("the server speaks protocol version " + h.Version + " and this client version " + Wire.Version
                    + ": use the LessPy C# client that comes with the server's lesspy-kernel package", (int)HandshakeResult.UnsupportedVersion);
            ReadExact(s, hello, 8, Wire.HelloSize - 8, "the server's hello", deadline, ct);
            h.Mode = (ServerMode)BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hello, 6, 2));
            h.Session = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(hello, 8, 8));
            byte[] mac;
            using (var hmac = new HMACSHA256(key)) mac = hmac.ComputeHash(hello, Wire.NonceOffset, Wire.NonceSize);

            var answer = new byte[Wire.AnswerSize];
            answer[0] = (byte)'L'; answer[1] = (byte)'S'; answer[2] = (byte)'P'; answer[3] = (byte)'Y';
            BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(answer, 4, 2), Wire.Version);
            BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(answer, 6, 2), (ushort)purpose);
            BinaryPrimitives.WriteUInt32LittleEndian(new Span<byte>(answer, 8, 4), (uint)CurrentPid);
            BinaryPrimitives.WriteUInt64LittleEndian(new Span<byte>(answer, 12, 8), clientId);
            Buffer.BlockCopy(mac, 0, answer, 20, 32);
            if (!s.Send(answer, 0, answer.Length)) throw new ServerUnavailableException("the server closed the connection during the handshake");
            return h;
        }

        /// <summary>Reads the result and its message; returns the message of an accepted connection, throws otherwise.</summary>
        public static byte[] ReadResult(NotifySocket s, EndPoint at, WorkFolder folder)
        {
            return ReadResult(s, at, folder, DefaultDeadline(), CancellationToken.None);
        }

        /// <summary>As <see cref="ReadResult(NotifySocket, EndPoint, WorkFolder)"/>, waiting until <paramref name="deadline"/> and while <paramref name="ct"/> is not cancelled.</summary>
        public static byte[] ReadResult(NotifySocket s, EndPoint at, WorkFolder folder, long deadline, CancellationToken ct)
        {
            var head = new byte[3];
            ReadExact(s, head, 0, 3, "the handshake result", deadline, ct);
            int len = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(head, 1, 2));
            var msg = new byte[len];
            if (len > 0) ReadExact(s, msg, 0, len, "the handshake message", deadline, ct);
            var result = (HandshakeResult)head[0];
            if (result == HandshakeResult.Accepted) return msg;
            string text = Encoding.UTF8.GetString(msg);
            string tail = text.Length > 0 ? ": " + text : "";
            switch (result)
            {
                case HandshakeResult.WrongKey:
                    throw new HandshakeException("the server refused the session key of " + folder.File(WorkFolder.KeyFile) + tail
                        + " (wrong session key: the file changed, or another server answers on " + Describe(at) + ")", head[0], text);
                case HandshakeResult.UnsupportedVersion:
                    throw new HandshakeException("the server does not support protocol version " + Wire.Version + tail, head[0], text);
                case HandshakeResult.Busy:
                    throw new HandshakeException("the server of " + folder.Path + " is busy" + (text.Length > 0 ? ": " + text : " (it serves its limit of clients or lanes)"), head[0], text);
                default:
                    throw new HandshakeException("the server refused the connection (result " + head[0] + ")" + tail, head[0], text);
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
        /// none); a cancellable <paramref name="ct"/> is looked at every 20 ms. A server that accepted the connection (the
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
                if (cancellable && (us < 0 || us > CancelSliceMicroseconds)) us = CancelSliceMicroseconds;
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

        // ---------------------------------------------------------------- the handover (section 2)

        /// <summary>
        /// Publishes the call frame already written at the request payload: length, status, then the sequence with
        /// release semantics, a full fence, and a CALL byte only if the server said it is about to block.
        /// Returns the call's sequence; false in <paramref name="sent"/> when the connection is gone.
        /// </summary>
        public ulong Publish(int payloadLength, out bool sent)
        {
            return Publish(payloadLength, RequestStatus.Call, out sent);
        }

        /// <summary>As <see cref="Publish(int, out bool)"/>, with the request's status (a stream's call, next or close).</summary>
        public ulong Publish(int payloadLength, RequestStatus status, out bool sent)
        {
            return Publish(payloadLength, status, 0, out sent);
        }

        /// <summary>As <see cref="Publish(int, RequestStatus, out bool)"/>, with the request's flags (<see cref="Wire.FlagReplyInRequest"/>).</summary>
        public ulong Publish(int payloadLength, RequestStatus status, uint flags, out bool sent)
        {
            byte* h = Request.Base;
            *(ulong*)(h + Wire.OffLength) = (ulong)payloadLength;
            *(uint*)(h + Wire.OffStatus) = (uint)status;
            *(uint*)(h + Wire.OffFlags) = flags;
            SentLength = payloadLength;
            ulong seq = ++_sequence;
            Volatile.Write(ref *(long*)(h + Wire.OffSequence), (long)seq);
            Interlocked.MemoryBarrier();
            sent = true;
            if (Volatile.Read(ref *(int*)(h + Wire.OffWaiting)) == 1) sent = SendByte(CallByte);
            return seq;
        }

        bool SendByte(byte[] b) { return _socket.Send(b, 0, 1); }

        ulong ReplySequence { get { return (ulong)Volatile.Read(ref *(long*)(Response.Base + Wire.OffSequence)); } }

        /// <summary>True once the reply to <paramref name="seq"/> is in the response file; a higher sequence is a protocol error.</summary>
        bool Arrived(ulong seq)
        {
            ulong r = ReplySequence;
            if (r == seq) return true;
            if (r > seq) throw new ProtocolException("lane " + Id + "'s reply carries sequence " + r + " but the call was " + seq);
            return false;                       // older: a late reply to an abandoned call, or nothing yet
        }

        /// <summary>True once the late reply of an abandoned call (sequence <paramref name="seq"/>) or a later one arrived.</summary>
        public bool ReplyCameFor(ulong seq) { return ReplySequence >= seq; }

        /// <summary>
        /// Waits for the reply to <paramref name="seq"/>: spins about 50 µs, yields a while, then announces
        /// <c>waiting = 1</c>, fences, re-checks and blocks on the socket until <paramref name="deadline"/>
        /// (a Stopwatch timestamp; long.MaxValue waits forever). Notify bytes are hints and never errors.
        /// </summary>
        public WaitOutcome Wait(ulong seq, long deadline, CancellationToken ct)
        {
            if (Arrived(seq)) return WaitOutcome.Arrived;
            long start = Stopwatch.GetTimestamp();
            long spinUntil = start + SpinTicks;
            while (Stopwatch.GetTimestamp() < spinUntil)
            {
                Thread.SpinWait(20);
                if (Arrived(seq)) return WaitOutcome.Arrived;
            }
            long yieldUntil = spinUntil + YieldTicks;
            while (Stopwatch.GetTimestamp() < yieldUntil)
            {
                Thread.Yield();
                if (Arrived(seq)) return WaitOutcome.Arrived;
            }
            int* waiting = (int*)(Response.Base + Wire.OffWaiting);
            bool cancellable = ct.CanBeCanceled;
            while (true)
            {
                Volatile.Write(ref *waiting, 1);
                Interlocked.MemoryBarrier();
                if (Arrived(seq))
                {
                    Volatile.Write(ref *waiting, 0);
                    return WaitOutcome.Arrived;
                }
                if (cancellable && ct.IsCancellationRequested)
                {
                    Volatile.Write(ref *waiting, 0);
                    return WaitOutcome.Cancelled;
                }
                int us;
                if (deadline == long.MaxValue) us = -1;
                else
                {
                    long left = deadline - Stopwatch.GetTimestamp();
                    if (left <= 0)
                    {
                        Volatile.Write(ref *waiting, 0);
                        return WaitOutcome.TimedOut;
                    }
                    double micro = left * 1e6 / Stopwatch.Frequency;
                    us = micro >= int.MaxValue ? int.MaxValue : Math.Max(1, (int)micro);
                }
                if (cancellable && (us < 0 || us > CancelSliceMicroseconds)) us = CancelSliceMicroseconds;
                bool closed = false;
                try
                {
                    if (_socket.Poll(us))
                    {
                        int r = _socket.Receive(_drain, 0, _drain.Length);
                        if (r <= 0) closed = true;
                        // bytes are wake-up hints (REPLY); a stray or late one is dropped
                    }
                }
                catch (SocketException) { closed = true; }
                catch (ObjectDisposedException) { closed = true; }
                Volatile.Write(ref *waiting, 0);
                if (closed) return Arrived(seq) ? WaitOutcome.Arrived : WaitOutcome.Closed;
            }
        }

        /// <summary>
        /// Abandons call <paramref name="seq"/>: writes it into the request header's <c>cancel</c> field, which the
        /// server watches: it drops the call if not started and interrupts it if running. No byte is sent (the
        /// server's lane thread is busy with the call; a byte would only sit in the socket).
        /// </summary>
        public void Cancel(ulong seq)
        {
            Volatile.Write(ref *(long*)(Request.Base + Wire.OffCancel), (long)seq);
            Interlocked.MemoryBarrier();
        }

        /// <summary>
        /// False when the server has closed this lane's connection. Drops pending hint bytes. Used only for a lane
        /// idle for a while, so the fast path of back-to-back calls pays nothing.
        /// </summary>
        public bool LooksOpen()
        {
            try
            {
                while (_socket.Poll(0))
                {
                    if (_socket.Receive(_drain, 0, _drain.Length) <= 0) return false;   // readable with nothing: closed
                }
                return true;
            }
            catch (SocketException) { return false; }
            catch (ObjectDisposedException) { return false; }
        }

        /// <summary>Sends SHUTDOWN (stop the server once this client has gone). False when the connection is gone.</summary>
        public bool SendShutdown() { return SendByte(ShutdownByte); }

        /// <summary>Shuts the connection down without unmapping: wakes a thread blocked in <see cref="Wait"/>.</summary>
        public void Abort()
        {
            _socket.Shutdown();
        }

        /// <summary>
        /// Closes the connection and gives both files back; every view of this lane throws from now on (the generations
        /// are bumped first). Views another thread is reading right now never fault: the ranges become zero pages, unmapped
        /// once no view references them (<see cref="Mapping.Dispose"/>). Idempotent.
        /// </summary>
        public void Close()
        {
            if (Closed) return;
            Closed = true;
            Results.Bump();
            Requests.Bump();
            Abort();
            _socket.Dispose();
            Request.Dispose();
            Response.Dispose();
        }
    }

    /// <summary>
    /// The server accepted a connection but did not send its part of the handshake in time (<see cref="Lane.Open(WorkFolder, byte[], ulong, out Hello, long, CancellationToken)"/>).
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
