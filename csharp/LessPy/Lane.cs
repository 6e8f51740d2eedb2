using System;
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// The mapped transport (PROTOCOL.md section 2): one lane's notify connection, its request and response mappings,
    /// and its call sequence. Carries one call at a time, used by the thread that holds the lane for that call (the
    /// channel's pool says which). Besides <see cref="IFrameTransport"/> it has what only shared memory allows:
    /// in-place request arrays (<see cref="InPlace"/>) and replies that are views of the request
    /// (<see cref="RequestView"/>).
    /// </summary>
    internal sealed unsafe class Lane : IFrameTransport
    {
        static readonly byte[] CallByte = { Wire.NotifyCall };
        static readonly byte[] ShutdownByte = { Wire.NotifyShutdown };

        readonly NotifySocket _socket;
        readonly byte[] _drain = new byte[64];                   // receives notify bytes; only the lane's holder uses it
        ulong _sequence;
        int _sentLength;
        volatile bool _closed;

        public readonly int Id;
        public readonly Mapping Request;
        public readonly Mapping Response;
        /// <summary>Result views (over the response file, or the request file for NDARRAY_IN_REQUEST) are valid while this has the value they were made with.</summary>
        public readonly ViewGeneration Results = new ViewGeneration();
        /// <summary>The in-place request arrays of the request file.</summary>
        public readonly RequestArrays InPlace = new RequestArrays();

        Lane(int id, NotifySocket socket, Mapping req, Mapping resp)
        {
            Id = id;
            _socket = socket;
            Request = req;
            Response = resp;
        }

        // ---------------------------------------------------------------- opening

        /// <summary>
        /// Opens a lane: connect, handshake with purpose 0, map the two files and check their session id. Waits for the
        /// server's handshake until <paramref name="deadline"/> (a Stopwatch timestamp; long.MaxValue: no limit) and while
        /// <paramref name="ct"/> is not cancelled.
        /// </summary>
        /// <exception cref="HandshakeException">The server refused (wrong key, version, busy: its message says which limit).</exception>
        /// <exception cref="ServerUnavailableException">Nothing answers, or the server went away during the handshake.</exception>
        /// <exception cref="NotAnsweringException">The deadline passed before the server took the connection or sent its part of the handshake.</exception>
        /// <exception cref="OperationCanceledException"><paramref name="ct"/> was cancelled meanwhile.</exception>
        public static Lane Open(WorkFolder folder, byte[] key, ulong clientId, out Hello hello, long deadline, CancellationToken ct)
        {
            EndPoint at = Handshake.NotifyEndPoint(folder);
            NotifySocket s;
            try { s = NotifySocket.Connect(at, deadline, ct); }
            catch (SocketException e)
            {
                throw new ServerUnavailableException("no lesspy server answers on " + Handshake.Describe(at) + " (from " + folder.File(WorkFolder.PortFile)
                    + "): " + e.Message + ". The server has stopped: start it again", e);
            }
            Mapping req = null, resp = null;
            try
            {
                hello = Handshake.Exchange(s, at, key, Purpose.OpenLane, clientId, deadline, ct);
                byte[] answer = Handshake.ReadResult(s, at, folder, deadline, ct);
                if (answer.Length != Wire.LaneIdSize) throw new ProtocolException("the server accepted the lane but sent " + answer.Length + " bytes, not a u32 lane id");
                int id = (int)BinaryPrimitives.ReadUInt32LittleEndian(answer);
                string reqPath = folder.File(Wire.LaneFile(id, Wire.LaneRequestSuffix));
                string respPath = folder.File(Wire.LaneFile(id, Wire.LaneResponseSuffix));
                try
                {
                    if (Posix.Is64BitLinux)
                    {
                        // opened through the checked folder's descriptor and checked: no path is looked up again
                        req = Mapping.Open(reqPath, hello.Session, folder.OpenFile(Wire.LaneFile(id, Wire.LaneRequestSuffix), true, false));
                        resp = Mapping.Open(respPath, hello.Session, folder.OpenFile(Wire.LaneFile(id, Wire.LaneResponseSuffix), true, false));
                    }
                    else
                    {
                        folder.CheckFile(Wire.LaneFile(id, Wire.LaneRequestSuffix));       // this user's own and private
                        folder.CheckFile(Wire.LaneFile(id, Wire.LaneResponseSuffix));
                        req = Mapping.Open(reqPath, hello.Session);
                        resp = Mapping.Open(respPath, hello.Session);
                    }
                }
                catch (IOException e)
                {
                    throw new ServerUnavailableException("cannot map the files of lane " + id + " in " + folder.Path + ": " + e.Message, e);
                }
                return new Lane(id, s, req, resp);
            }
            catch
            {
                if (req != null) req.Dispose();
                if (resp != null) resp.Dispose();
                s.Dispose();
                throw;
            }
        }

        // ---------------------------------------------------------------- sending (section 2, the handover)

        /// <inheritdoc />
        public Span<byte> ReserveRequest(long payloadBytes)
        {
            Request.EnsurePayload(payloadBytes);
            return new Span<byte>(Request.Base + Wire.HeaderSize, Request.PayloadCapacity);
        }

        /// <summary>
        /// Publishes the frame already written at the request payload: length, status, flags, then the sequence with
        /// release semantics, a full fence, and a CALL byte only if the server said it is about to block.
        /// </summary>
        public ulong Send(int payloadLength, RequestStatus status, uint flags, out bool sent)
        {
            byte* h = Request.Base;
            *(ulong*)(h + Wire.OffLength) = (ulong)payloadLength;
            *(uint*)(h + Wire.OffStatus) = (uint)status;
            *(uint*)(h + Wire.OffFlags) = flags;
            _sentLength = payloadLength;
            ulong seq = ++_sequence;
            Volatile.Write(ref *(long*)(h + Wire.OffSequence), (long)seq);
            Interlocked.MemoryBarrier();
            sent = true;
            if (Volatile.Read(ref *(int*)(h + Wire.OffWaiting)) == 1) sent = SendByte(CallByte);
            return seq;
        }

        bool SendByte(byte[] b) { return _socket.Send(b, 0, 1); }

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

        /// <inheritdoc />
        public bool SendShutdown() { return SendByte(ShutdownByte); }

        // ---------------------------------------------------------------- waiting

        ulong ReplySequence { get { return (ulong)Volatile.Read(ref *(long*)(Response.Base + Wire.OffSequence)); } }

        /// <summary>True once the reply to <paramref name="seq"/> is in the response file; a higher sequence is a protocol error.</summary>
        bool Arrived(ulong seq)
        {
            ulong r = ReplySequence;
            if (r == seq) return true;
            if (r > seq) throw new ProtocolException("lane " + Id + "'s reply carries sequence " + r + " but the call was " + seq);
            return false;                       // older: a late reply to an abandoned call, or nothing yet
        }

        /// <inheritdoc />
        public bool ReplyCameFor(ulong seq) { return ReplySequence >= seq; }

        /// <summary>
        /// Waits for the reply to <paramref name="seq"/>: spins <see cref="WaitTimings.SpinTicks"/>, yields the CPU
        /// between looks for <see cref="WaitTimings.YieldTicks"/>, then announces <c>waiting = 1</c>, fences, re-checks and
        /// blocks on the socket until <paramref name="deadline"/> (a Stopwatch timestamp; long.MaxValue waits forever).
        /// Notify bytes are hints and never errors.
        /// </summary>
        public WaitOutcome Wait(ulong seq, long deadline, CancellationToken ct)
        {
            if (Arrived(seq)) return WaitOutcome.Arrived;
            long start = Stopwatch.GetTimestamp();
            long spinUntil = start + WaitTimings.SpinTicks;
            while (Stopwatch.GetTimestamp() < spinUntil)
            {
                Thread.SpinWait(20);
                if (Arrived(seq)) return WaitOutcome.Arrived;
            }
            long yieldUntil = spinUntil + WaitTimings.YieldTicks;
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
                if (cancellable && (us < 0 || us > WaitTimings.CancelSliceMicroseconds)) us = WaitTimings.CancelSliceMicroseconds;
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
        // ---------------------------------------------------------------- reading the reply

        /// <summary>Maps the response file again if it grew, and checks the reply's length against the file before reading it.</summary>
        public uint ReadReply(out ReadOnlySpan<byte> payload)
        {
            Mapping resp = Response;
            resp.Refresh();
            byte* h = resp.Base;
            ulong len = *(ulong*)(h + Wire.OffLength);
            uint status = *(uint*)(h + Wire.OffStatus);
            if (len > (ulong)resp.PayloadCapacity)
                throw new ProtocolException("the reply says its payload is " + len + " bytes but " + resp.Path + " holds " + resp.PayloadCapacity);
            // the header's page was just read; a payload beyond it is read only once the file is known to hold it (a
            // truncated file would raise SIGBUS)
            if (Wire.HeaderSize + (long)len > 4096) resp.CheckCovers(Wire.HeaderSize + (long)len);
            payload = new ReadOnlySpan<byte>(h + Wire.HeaderSize, (int)len);
            return status;
        }

        /// <inheritdoc />
        public ReadOnlyMemory<byte> ReplyView(int length)
        {
            return new MappedMemoryManager(Response.Base + Wire.HeaderSize, length, Results, Response.Keeper).Memory;
        }

        /// <inheritdoc />
        public void ExpireReplyViews() { Results.Bump(); }

        /// <inheritdoc />
        public long ReplyCapacity { get { return Response.Capacity; } }

        /// <summary>The payload length of the last request sent: what an NDARRAY_IN_REQUEST reply may point into.</summary>
        public int SentLength { get { return _sentLength; } }

        /// <summary>
        /// An NDARRAY_IN_REQUEST result: <paramref name="length"/> bytes at <paramref name="offset"/> of the last request's
        /// payload, as a view that expires with the reply's views (<see cref="Results"/>).
        /// </summary>
        public ReadOnlyMemory<byte> RequestView(int offset, int length)
        {
            Request.CheckCovers(Wire.HeaderSize + (long)offset + length);
            return new MappedMemoryManager(Request.Base + Wire.HeaderSize + offset, length, Results, Request.Keeper).Memory;
        }

        // ---------------------------------------------------------------- in-place request arrays

        /// <summary>Room left below in-place request arrays for the call frame itself.</summary>
        const long MinFrameRoom = 4096;

        /// <summary>
        /// Places an in-place request array of <paramref name="size"/> bytes in the request file, below this call's other
        /// arrays (<paramref name="low"/>: the lowest of their payload offsets, -1 none; updated), from the end of the
        /// payload area downward, aligned to Wire.NdArrayAlign; grows the file when the frame would have less than MinFrameRoom below them.
        /// Its disk blocks are reserved: the app writes there, and a hole on a full disk would raise SIGBUS. Returns its
        /// payload offset.
        /// </summary>
        public long PlaceRequestArray(long size, ref long low)
        {
            Mapping req = Request;
            long top = low >= 0 ? low : req.PayloadCapacity;
            const long align = Wire.NdArrayAlign;
            long offset = (top - size) & ~(align - 1);
            if (offset < MinFrameRoom)
            {
                long need = low >= 0 ? req.PayloadCapacity + size + align : size + align + MinFrameRoom;
                long before = req.PayloadCapacity;
                req.EnsurePayload(need);
                offset = (req.PayloadCapacity - size) & ~(align - 1);
                if (low < 0 || offset < before) low = offset;
            }
            else low = offset;
            req.ReserveRange(Wire.HeaderSize + offset, size);
            return offset;
        }

        /// <summary>Writable memory over an in-place request array, valid while <see cref="InPlace"/>'s generation is unchanged.</summary>
        public Memory<byte> RequestArrayMemory(long offset, int size)
        {
            return new MappedMemoryManager(Request.Base + Wire.HeaderSize + offset, size, InPlace.Generation, Request.Keeper).Memory;
        }

        // ---------------------------------------------------------------- closing

        /// <summary>Drops pending hint bytes; false when the server has closed this lane's connection.</summary>
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

        /// <inheritdoc />
        public void Abort()
        {
            _socket.Shutdown();
        }

        /// <inheritdoc />
        public bool IsClosed { get { return _closed; } }

        /// <summary>
        /// Closes the connection and gives both files back; every view of this lane throws from now on (the generations
        /// are bumped first). Views another thread is reading right now never fault: the ranges become zero pages, unmapped
        /// once no view references them (<see cref="Mapping.Dispose"/>). Idempotent.
        /// </summary>
        public void Close()
        {
            if (_closed) return;
            _closed = true;
            Results.Bump();
            InPlace.Generation.Bump();
            Abort();
            _socket.Dispose();
            Request.Dispose();
            Response.Dispose();
        }
    }
}
