using System;
using System.Buffers.Binary;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;

namespace LessPy
{
    /// <summary>
    /// The websocket transport (PROTOCOL.md section 10): one lane is one websocket to Jupyter Server's lesspy relay, which
    /// carries each request and each reply as one binary message (the 64-byte header of section 2, then the payload).
    /// Managed code only (<see cref="ClientWebSocket"/>, or the platform's websocket over a TLS stream of ours where
    /// ClientWebSocket cannot be given a certificate to trust): no native library.
    /// <para>
    /// The request and the reply each live in a pinned buffer whose message starts at a 64-aligned address, so the
    /// arrays of a reply are aligned as in a mapping. A receive loop per lane reads every message as it comes (which
    /// also keeps the websocket's control frames answered): a KEEPALIVE only proves the connection alive, a REPLY is
    /// put into the reply buffer and wakes the waiting caller. Result views (<see cref="NdArray"/>) are windows of the
    /// reply buffer with the mapped lane's generation rule (<see cref="ExpireReplyViews"/>). A lane that hears nothing
    /// for 5 heartbeats is lost. The open (upgrade, hello, errors) is in RemoteLane.Open.cs.
    /// </para>
    /// </summary>
    internal sealed partial class RemoteLane : IFrameTransport, IDisposable
    {
        /// <summary>How many heartbeats of silence mean the connection is lost (section 10.1).</summary>
        internal const int SilentHeartbeats = 5;
        /// <summary>The first size of each buffer's payload area; both grow on demand.</summary>
        const int InitialPayload = 64 * 1024;
        /// <summary>The largest payload a buffer can hold (a byte[] with 64 bytes of header and 63 of alignment).</summary>
        const long MaxBufferPayload = int.MaxValue - 64 - Wire.HeaderSize - 63;
        /// <summary>After spinning, how long a wait looks (yielding) before it blocks: a reply through the relay takes a few hundred µs.</summary>
        static readonly long YieldTicks = Stopwatch.Frequency / 1000;              // 1 ms

        /// <summary>
        /// A pinned byte[] whose message (header, then payload) starts at a 64-aligned address. Freed by its finalizer:
        /// result views keep it (their keeper), so it stays pinned while a view can reach it.
        /// </summary>
        internal sealed unsafe class Pinned
        {
            public readonly byte[] Array;
            public readonly int Offset;              // where the message starts in Array
            public readonly byte* Message;
            public readonly long PayloadCapacity;
            GCHandle _handle;

            public Pinned(long payload)
            {
                Array = new byte[payload + Wire.HeaderSize + 63];
                _handle = GCHandle.Alloc(Array, GCHandleType.Pinned);
                long at = (long)_handle.AddrOfPinnedObject();
                Offset = (int)((64 - (at & 63)) & 63);
                Message = (byte*)at + Offset;
                PayloadCapacity = Array.Length - Offset - Wire.HeaderSize;
            }

            public byte* Payload { get { return Message + Wire.HeaderSize; } }

            ~Pinned() { if (_handle.IsAllocated) _handle.Free(); }
        }

        readonly WebSocket _ws;
        readonly RemoteEndpoint _at;
        readonly byte[] _head = new byte[Wire.HeaderSize];       // the receive loop's header
        readonly byte[] _cancel = new byte[Wire.HeaderSize];     // a CANCEL message
        readonly ManualResetEventSlim _signal = new ManualResetEventSlim(false, 0);
        readonly object _sendLock = new object();
        readonly long _silenceTicks;
        Pinned _request;
        volatile Pinned _reply;
        Task _sending;                  // the last send started (a large request may still be going out)
        long _sequence;                 // the last request's sequence
        long _replySequence;            // the last reply's sequence (what Wait and ReplyCameFor look at)
        int _replyLength;
        uint _replyStatus;
        long _lastHeard;                // Stopwatch timestamp of the last bytes received
        volatile string _lost;          // why the connection is lost; null while it is open
        volatile bool _protocolError;   // _lost is a protocol violation of the relay (Wait throws)
        volatile bool _closed;

        /// <summary>The lane id the session gave (the hello's <c>lane</c>).</summary>
        public readonly int Id;
        /// <summary>The session id of the server run (the hello's <c>session_id</c>).</summary>
        public readonly ulong Session;
        /// <summary>The largest payload the relay takes (the hello's <c>max_message</c>).</summary>
        public readonly long MaxMessage;
        /// <summary>Result views are valid while this has the value they were made with.</summary>
        public readonly ViewGeneration Results = new ViewGeneration();

        RemoteLane(WebSocket ws, RemoteEndpoint at, int id, ulong session, long maxMessage, int heartbeatMs)
        {
            _ws = ws;
            _at = at;
            Id = id;
            Session = session;
            MaxMessage = Math.Min(maxMessage, MaxBufferPayload);
            _silenceTicks = (long)SilentHeartbeats * heartbeatMs * Stopwatch.Frequency / 1000;
            _request = new Pinned(InitialPayload);
            _reply = new Pinned(InitialPayload);
            _lastHeard = Stopwatch.GetTimestamp();
            WriteHeader(_cancel, 0, 0);
        }

        /// <summary>Why the connection is lost ("" while open): for the message of a call it ended.</summary>
        public string LostReason { get { return _lost ?? ""; } }

        /// <summary>The connection as messages name it: the session's URL (no token).</summary>
        public string Where { get { return _at.Display; } }

        // ---------------------------------------------------------------- sending

        /// <inheritdoc />
        public unsafe Span<byte> ReserveRequest(long payloadBytes)
        {
            if (payloadBytes > MaxMessage)
                throw new PayloadTooLargeException("the call needs " + payloadBytes + " bytes of payload but the lesspy relay at " + _at.Display
                    + " takes messages of at most " + MaxMessage + " bytes (its LessPyRelay.max_message_size): pass smaller arrays, or raise it "
                    + "in the Jupyter Server's configuration", payloadBytes + Wire.HeaderSize, MaxMessage + Wire.HeaderSize);
            Pinned r = _request;
            if (payloadBytes > r.PayloadCapacity)
            {
                long grown = Math.Min(Math.Max(payloadBytes, r.PayloadCapacity * 2), MaxMessage);
                r = new Pinned(grown);
                _request = r;
            }
            return new Span<byte>(r.Payload, (int)r.PayloadCapacity);
        }

        /// <summary>
        /// Writes the header before the payload and starts sending the message. A send that does not finish at once
        /// (a large request) goes on in the background; a failure marks the lane lost and wakes <see cref="Wait"/>.
        /// </summary>
        public unsafe ulong Send(int payloadLength, RequestStatus status, uint flags, out bool sent)
        {
            Pinned r = _request;
            ulong seq = (ulong)Interlocked.Increment(ref _sequence);
            byte* h = r.Message;
            *(uint*)(h + Wire.OffMagic) = MagicWord;
            *(ushort*)(h + Wire.OffVersion) = Wire.Version;
            *(ushort*)(h + Wire.OffHeaderSize) = Wire.HeaderSize;
            *(ulong*)(h + Wire.OffCapacity) = 0;
            *(ulong*)(h + Wire.OffSequence) = seq;
            *(ulong*)(h + Wire.OffLength) = (ulong)payloadLength;
            *(uint*)(h + Wire.OffStatus) = (uint)status;
            *(uint*)(h + Wire.OffWaiting) = 0;
            *(ulong*)(h + Wire.OffSession) = Session;
            *(ulong*)(h + Wire.OffCancel) = 0;
            *(uint*)(h + Wire.OffFlags) = flags & ~Wire.FlagReplyInRequest;
            *(uint*)(h + Wire.OffFlags + 4) = 0;
            sent = _lost == null && Enqueue(r.Array, r.Offset, Wire.HeaderSize + payloadLength);
            return seq;
        }

        /// <summary>"LPYM" as the little-endian u32 at the header's start.</summary>
        const uint MagicWord = 0x4D59504C;

        void WriteHeader(byte[] b, ulong seq, ulong cancel)
        {
            var s = new Span<byte>(b);
            BinaryPrimitives.WriteUInt32LittleEndian(s.Slice(Wire.OffMagic), MagicWord);
            BinaryPrimitives.WriteUInt16LittleEndian(s.Slice(Wire.OffVersion), Wire.Version);
            BinaryPrimitives.WriteUInt16LittleEndian(s.Slice(Wire.OffHeaderSize), Wire.HeaderSize);
            BinaryPrimitives.WriteUInt64LittleEndian(s.Slice(Wire.OffSequence), seq);
            BinaryPrimitives.WriteUInt64LittleEndian(s.Slice(Wire.OffSession), Session);
            BinaryPrimitives.WriteUInt64LittleEndian(s.Slice(Wire.OffCancel), cancel);
        }

        /// <summary>
        /// Sends one binary message after the previous send has finished (a websocket takes one send at a time). False
        /// when it failed at once; a later failure marks the lane lost.
        /// </summary>
        bool Enqueue(byte[] array, int offset, int count)
        {
            lock (_sendLock)
            {
                Task prev = _sending;
                Task t;
                try
                {
                    if (prev == null || prev.IsCompleted) t = SendMessage(array, offset, count);
                    else
                        t = prev.ContinueWith(p => SendMessage(array, offset, count), TaskContinuationOptions.ExecuteSynchronously).Unwrap();
                }
                catch (Exception e)
                {
                    Lose("sending failed: " + Inner(e).Message, false);
                    return false;
                }
                _sending = t;
                if (t.IsCompleted)
                {
                    if (t.Status == TaskStatus.RanToCompletion) return true;
                    Lose("sending failed: " + (t.Exception != null ? Inner(t.Exception).Message : "cancelled"), false);
                    return false;
                }
                t.ContinueWith(SendFailed, TaskContinuationOptions.NotOnRanToCompletion | TaskContinuationOptions.ExecuteSynchronously);
                return true;
            }
        }

        /// <summary>
        /// Sends one binary message; a large one as frames of <see cref="FragmentBytes"/> (still one message): a client
        /// masks what it sends, and a websocket masks a frame in a buffer of the frame's size, which for a large frame is
        /// allocated afresh each time instead of coming from its pool.
        /// </summary>
        Task SendMessage(byte[] array, int offset, int count)
        {
            if (count <= FragmentBytes)
                return _ws.SendAsync(new ArraySegment<byte>(array, offset, count), WebSocketMessageType.Binary, true, CancellationToken.None);
            return SendFragments(array, offset, count);
        }

        async Task SendFragments(byte[] array, int offset, int count)
        {
            for (int done = 0; done < count; done += FragmentBytes)
            {
                int n = Math.Min(FragmentBytes, count - done);
                await _ws.SendAsync(new ArraySegment<byte>(array, offset + done, n), WebSocketMessageType.Binary, done + n == count,
                    CancellationToken.None).ConfigureAwait(false);
            }
        }

        /// <summary>The largest frame a message is sent in: with its frame header, what the websocket's buffer pool still holds (1 MiB).</summary>
        internal const int FragmentBytes = (1 << 20) - 16;

        void SendFailed(Task t)
        {
            Lose("sending failed: " + (t.Exception != null ? Inner(t.Exception).Message : "cancelled"), false);
        }

        /// <summary>Sends a CANCEL for <paramref name="seq"/> (after the request itself, if that is still going out). Never blocks.</summary>
        public void Cancel(ulong seq)
        {
            if (_lost != null) return;
            var msg = new byte[Wire.HeaderSize];
            Buffer.BlockCopy(_cancel, 0, msg, 0, Wire.HeaderSize);
            BinaryPrimitives.WriteUInt64LittleEndian(new Span<byte>(msg, Wire.OffCancel, 8), seq);
            Enqueue(msg, 0, msg.Length);
        }

        /// <summary>False: a remote client never stops a session (SHUTDOWN is not relayed).</summary>
        public bool SendShutdown() { return false; }

        // ---------------------------------------------------------------- receiving

        /// <summary>Starts the receive loop (once the hello has been read).</summary>
        void StartReceiving()
        {
            Task loop = ReceiveLoop();
            GC.KeepAlive(loop);
        }

        async Task ReceiveLoop()
        {
            try
            {
                while (true)
                {
                    int got = 0;
                    WebSocketReceiveResult r;
                    do
                    {
                        r = await _ws.ReceiveAsync(new ArraySegment<byte>(_head, got, Wire.HeaderSize - got), CancellationToken.None).ConfigureAwait(false);
                        Heard();
                        if (r.MessageType == WebSocketMessageType.Close) { Lose(CloseText(), false); return; }
                        if (r.MessageType != WebSocketMessageType.Binary) { Lose("the relay sent a text message after its hello", true); return; }
                        got += r.Count;
                    } while (got < Wire.HeaderSize && !r.EndOfMessage);
                    string bad = CheckHeader(got, r.EndOfMessage);
                    if (bad != null) { Lose(bad, true); return; }
                    ulong seq = BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(_head, Wire.OffSequence, 8));
                    long len = (long)BinaryPrimitives.ReadUInt64LittleEndian(new ReadOnlySpan<byte>(_head, Wire.OffLength, 8));
                    if (seq == 0) continue;                                    // KEEPALIVE
                    long awaited = Volatile.Read(ref _sequence);
                    if ((long)seq > awaited) { Lose("the relay sent a reply to request " + seq + " but the last request sent was " + awaited, true); return; }
                    Pinned buf;
                    if ((long)seq < awaited) buf = new Pinned(len);              // a late reply of an abandoned call: read and dropped
                    else
                    {
                        buf = _reply;
                        if (len > buf.PayloadCapacity)
                        {
                            buf = new Pinned(Math.Min(Math.Max(len, buf.PayloadCapacity * 2), MaxMessage));
                            _reply = buf;
                        }
                    }
                    Buffer.BlockCopy(_head, 0, buf.Array, buf.Offset, Wire.HeaderSize);
                    long have = 0;
                    while (have < len)
                    {
                        r = await _ws.ReceiveAsync(new ArraySegment<byte>(buf.Array, buf.Offset + Wire.HeaderSize + (int)have, (int)(len - have)),
                            CancellationToken.None).ConfigureAwait(false);
                        Heard();
                        if (r.MessageType == WebSocketMessageType.Close) { Lose(CloseText(), false); return; }
                        have += r.Count;
                        if (r.EndOfMessage) break;
                    }
                    if (have != len || !r.EndOfMessage)
                    {
                        Lose("the relay sent a message whose header says " + len + " payload bytes but which holds " + (r.EndOfMessage ? have.ToString() : "more"), true);
                        return;
                    }
                    if ((long)seq < awaited) continue;
                    _replyLength = (int)len;
                    _replyStatus = BinaryPrimitives.ReadUInt32LittleEndian(new ReadOnlySpan<byte>(_head, Wire.OffStatus, 4));
                    Volatile.Write(ref _replySequence, (long)seq);
                    _signal.Set();
                }
            }
            catch (Exception e)
            {
                Lose(_closed ? "closed by this client" : "the connection failed: " + Inner(e).Message, false);
            }
        }

        /// <summary>What is wrong with a received message's header (null: nothing).</summary>
        string CheckHeader(int got, bool end)
        {
            if (got < Wire.HeaderSize) return "the relay sent a message of " + got + " bytes, shorter than the " + Wire.HeaderSize + "-byte header";
            var h = new ReadOnlySpan<byte>(_head);
            if (BinaryPrimitives.ReadUInt32LittleEndian(h) != MagicWord) return "the relay sent a message that does not start with LPYM";
            ushort version = BinaryPrimitives.ReadUInt16LittleEndian(h.Slice(Wire.OffVersion));
            if (version != Wire.Version) return "the relay speaks protocol version " + version + " and this client version " + Wire.Version;
            if (BinaryPrimitives.ReadUInt16LittleEndian(h.Slice(Wire.OffHeaderSize)) != Wire.HeaderSize) return "the relay sent a header size other than " + Wire.HeaderSize;
            ulong len = BinaryPrimitives.ReadUInt64LittleEndian(h.Slice(Wire.OffLength));
            ulong seq = BinaryPrimitives.ReadUInt64LittleEndian(h.Slice(Wire.OffSequence));
            if (len > (ulong)MaxMessage) return "the relay sent a message of " + len + " payload bytes, more than its max_message " + MaxMessage;
            if (end != (len == 0)) return "the relay sent a message whose header says " + len + " payload bytes but which " + (end ? "holds none" : "holds more");
            if (seq == 0 && len != 0) return "the relay sent a keepalive with a payload";
            return null;
        }

        void Heard() { Volatile.Write(ref _lastHeard, Stopwatch.GetTimestamp()); }

        string CloseText()
        {
            WebSocketCloseStatus? code = _ws.CloseStatus;
            string reason = _ws.CloseStatusDescription;
            if (!code.HasValue) return "Jupyter Server closed the websocket";
            if (!string.IsNullOrEmpty(reason)) return "Jupyter Server closed the websocket (code " + (int)code.Value + ": " + reason + ")";
            return "Jupyter Server closed the websocket (code " + (int)code.Value + ")" + CloseMeaning((int)code.Value);
        }

        /// <summary>What a close code of section 10.3 means for the caller ("" for one that needs no words).</summary>
        internal static string CloseMeaning(int code)
        {
            switch (code)
            {
                case 1001: return ": Jupyter Server is stopping";
                case 4404: return ": the session has gone (the kernel restarted or stopped, or %lesspy stop ran)";
                case 4503: return ": the session refused the lane or did not answer";
                default: return "";
            }
        }

        /// <summary>Marks the connection lost (the first reason stays), aborts the websocket and wakes the waiter.</summary>
        void Lose(string why, bool protocol)
        {
            if (_lost == null)
            {
                if (protocol) _protocolError = true;
                _lost = why;
            }
            if (protocol || !_closed)
            {
                try { _ws.Abort(); }
                catch (Exception) { }
            }
            _signal.Set();
        }

        static Exception Inner(Exception e)
        {
            while ((e is AggregateException || e is WebSocketException) && e.InnerException != null) e = e.InnerException;
            return e;
        }

        // ---------------------------------------------------------------- waiting

        bool Arrived(ulong seq)
        {
            long r = Volatile.Read(ref _replySequence);
            if ((ulong)r == seq) return true;
            if ((ulong)r > seq) throw new ProtocolException("lane " + Id + "'s reply carries sequence " + r + " but the call was " + seq);
            return false;
        }

        /// <summary>Whether the silence has lasted 5 heartbeats: then the lane is lost.</summary>
        bool Silent(long now)
        {
            if (now - Volatile.Read(ref _lastHeard) <= _silenceTicks) return false;
            Lose("nothing came from " + _at.Display + " for " + (_silenceTicks / (double)Stopwatch.Frequency).ToString("0.#") + " s (" + SilentHeartbeats
                + " heartbeats, not even a keepalive): Jupyter Server or the network to it stopped answering", false);
            return true;
        }

        /// <summary>
        /// Waits for the reply to <paramref name="seq"/>: spins <see cref="WaitTimings.SpinTicks"/>, yields between looks
        /// for <see cref="YieldTicks"/>, then blocks on the receive loop's signal, waking at least every heartbeat (and
        /// every <see cref="WaitTimings.CancelSliceMicroseconds"/> for a cancellable token) to look at the deadline, the
        /// token and the silence.
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
            long yieldUntil = spinUntil + YieldTicks;
            while (Stopwatch.GetTimestamp() < yieldUntil && _lost == null)
            {
                Thread.Yield();
                if (Arrived(seq)) return WaitOutcome.Arrived;
            }
            bool cancellable = ct.CanBeCanceled;
            while (true)
            {
                _signal.Reset();
                if (Arrived(seq)) return WaitOutcome.Arrived;
                if (_lost != null)
                {
                    if (_protocolError) throw new ProtocolException("the lesspy relay at " + _at.Display + ": " + _lost);
                    return WaitOutcome.Closed;
                }
                if (cancellable && ct.IsCancellationRequested) return WaitOutcome.Cancelled;
                long now = Stopwatch.GetTimestamp();
                if (Silent(now)) return Arrived(seq) ? WaitOutcome.Arrived : WaitOutcome.Closed;
                long left = deadline == long.MaxValue ? long.MaxValue : deadline - now;
                if (left <= 0) return WaitOutcome.TimedOut;
                long slice = Math.Min(left, _silenceTicks / SilentHeartbeats + 1);
                int ms = (int)Math.Max(1, Math.Min(slice * 1000 / Stopwatch.Frequency + 1, int.MaxValue));
                if (cancellable && ms > WaitTimings.CancelSliceMicroseconds / 1000) ms = WaitTimings.CancelSliceMicroseconds / 1000;
                _signal.Wait(ms);
            }
        }

        // ---------------------------------------------------------------- reading the reply

        /// <inheritdoc />
        public unsafe uint ReadReply(out ReadOnlySpan<byte> payload)
        {
            Pinned b = _reply;
            payload = new ReadOnlySpan<byte>(b.Payload, _replyLength);
            return _replyStatus;
        }

        /// <inheritdoc />
        public unsafe ReadOnlyMemory<byte> ReplyView(int length)
        {
            Pinned b = _reply;
            return new MappedMemoryManager(b.Payload, length, Results, b).Memory;
        }

        /// <inheritdoc />
        public void ExpireReplyViews() { Results.Bump(); }

        /// <inheritdoc />
        public long ReplyCapacity { get { return _reply.PayloadCapacity + Wire.HeaderSize; } }

        /// <summary>True once the reply to <paramref name="seq"/> (or a later one) has come, or the connection is lost (nothing more will come).</summary>
        public bool ReplyCameFor(ulong seq) { return (ulong)Volatile.Read(ref _replySequence) >= seq || _lost != null; }

        // ---------------------------------------------------------------- closing

        /// <summary>False once the connection is lost, closed, or silent for 5 heartbeats. No system call.</summary>
        public bool LooksOpen()
        {
            return _lost == null && !Silent(Stopwatch.GetTimestamp()) && _ws.State == WebSocketState.Open;
        }

        /// <inheritdoc />
        public void Abort()
        {
            Lose("closed by this client", false);
        }

        /// <inheritdoc />
        public bool IsClosed { get { return _closed; } }

        /// <summary>Closes the lane (<see cref="Close"/>): for a lane used outside a channel.</summary>
        public void Dispose() { Close(); }

        /// <summary>
        /// Closes the websocket (a close frame when nothing is being sent, else an abort) without blocking; every view of
        /// this lane throws from now on. Idempotent.
        /// </summary>
        public void Close()
        {
            if (_closed) return;
            _closed = true;
            Results.Bump();
            bool graceful = false;
            lock (_sendLock)
            {
                if (_lost == null && (_sending == null || _sending.IsCompleted) && _ws.State == WebSocketState.Open)
                {
                    _lost = "closed by this client";
                    try
                    {
                        _sending = _ws.CloseOutputAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None);
                        WebSocket ws = _ws;
                        _sending.ContinueWith(t => ws.Dispose());
                        graceful = true;
                    }
                    catch (Exception) { }
                }
            }
            if (!graceful)
            {
                Lose("closed by this client", false);
                _ws.Dispose();
            }
            _signal.Set();
        }
    }
}
