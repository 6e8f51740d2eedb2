using System;
using System.Diagnostics;
using System.IO;
using System.Threading;
using System.Threading.Tasks;

namespace LessPy
{
    /// <summary>
    /// The connection of one proxy to one server: a pool of lanes (PROTOCOL.md sections 2 and 3), opened lazily up to
    /// a maximum, and the call round trip (sections 6 and 7): the codec writes and reads the frames, each lane's
    /// <see cref="IFrameTransport"/> carries them. Its <see cref="LaneSource"/> says where lanes come from: a work folder
    /// on this machine (mapped lanes) or a session behind Jupyter Server's relay (websocket lanes, section 10). Thread-safe. The pool is in Channel.Pool.cs, the messages of its
    /// errors in Channel.Messages.cs.
    /// <para>
    /// The pool rule (data integrity): a thread starting a call first releases the lanes it holds (their result views
    /// die), reclaims set-aside lanes whose late reply has come, then takes a free lane (its own last one first), else
    /// opens a new lane, else takes a lane held by a dead thread, else the least recently used held lane (its views
    /// die: they throw, never show other data; but while a set-aside lane may come back, it first waits up to
    /// StealGraceTicks for that), else waits for a lane up to the call timeout. A lane holding in-place request arrays
    /// of a live thread is never taken over (that thread may be writing through a span, which cannot be checked). A
    /// lane the server refuses as over its per-client limit (its count of our closed lanes lags) counts as "cannot
    /// open" for RefusedTicks. A result with NdArray views keeps its lane held by the calling thread until that
    /// thread's next call; any other result frees it at once.
    /// </para>
    /// </summary>
    internal sealed partial class Channel : IDisposable
    {
        /// <summary>The most lanes a proxy opens: the server's limit per client (MAX_LANES_PER_CLIENT), as CSHARP.md says.</summary>
        public const int DefaultMaxLanes = 64;

        readonly LaneSource _source;
        readonly WorkFolder _folder;    // the local source's folder, null for a remote one
        readonly object _lock = new object();
        readonly ulong _clientId;
        ulong _session;                 // the server run our lanes belong to (0 before the first lane)
        int _pid = -1;
        ServerMode _mode;
        TimeSpan _timeout = TimeSpan.FromSeconds(100);
        long _timeoutTicks = 100 * Stopwatch.Frequency;
        volatile bool _disposed;

        Channel(LaneSource source)
        {
            _source = source;
            var local = source as LocalLaneSource;
            _folder = local != null ? local.Folder : null;
            _clientId = NewClientId();
        }

        static long _proxies;

        /// <summary>
        /// An id for this proxy's lanes (the server counts clients by it). It only has to differ from the other clients
        /// connected at the same time, so no cryptographic generator (slow to start on Mono): the process
        /// id, a high-resolution clock and a per-process counter, mixed.
        /// </summary>
        static ulong NewClientId()
        {
            ulong x = ((ulong)(uint)Handshake.CurrentPid << 32) ^ (ulong)Stopwatch.GetTimestamp()
                ^ ((ulong)Interlocked.Increment(ref _proxies) * 0x9E3779B97F4A7C15UL);
            x ^= x >> 33;
            x *= 0xFF51AFD7ED558CCDUL;
            x ^= x >> 33;
            return x == 0 ? 1 : x;
        }

        /// <summary>Connects to the folder's server and opens the first lane; throws when the folder is not served.</summary>
        public static Channel Open(WorkFolder folder) { return Open(new LocalLaneSource(folder)); }

        /// <summary>Connects to the source's server and opens the first lane; throws when nothing serves there.</summary>
        public static Channel Open(LaneSource source)
        {
            var c = new Channel(source);
            try
            {
                // no CallTimeout is set yet: the first lane waits the handshake's own time
                var first = new Slot(c.OpenLane(Handshake.DefaultDeadline(), CancellationToken.None, null));
                lock (c._lock)
                {
                    first.State = LaneState.Free;
                    first.LastUsed = Stopwatch.GetTimestamp();
                    c._lanes.Add(first);
                }
                return c;
            }
            catch
            {
                c.Dispose(false);
                throw;
            }
        }

        /// <summary>The work folder's path, or the remote session's URL (no token).</summary>
        public string Folder { get { return _source.Where; } }
        public int ServerPid { get { return _pid; } }
        /// <summary>The module this proxy bound (a path; "" for a server that names none; null: not checked), set by LessPythonInvoke.</summary>
        internal string BoundModule;

        public TimeSpan CallTimeout
        {
            get { return _timeout; }
            set
            {
                if (value != Timeout.InfiniteTimeSpan && (value <= TimeSpan.Zero || value.TotalMilliseconds > int.MaxValue))
                    throw new ArgumentOutOfRangeException(nameof(value), "a positive TimeSpan of at most int.MaxValue ms, or Timeout.InfiniteTimeSpan");
                _timeout = value;
                Volatile.Write(ref _timeoutTicks, value == Timeout.InfiniteTimeSpan ? long.MaxValue : (long)(value.TotalSeconds * Stopwatch.Frequency));
            }
        }

        long Deadline()
        {
            long t = Volatile.Read(ref _timeoutTicks);
            return t == long.MaxValue ? long.MaxValue : Stopwatch.GetTimestamp() + t;
        }

        // ---------------------------------------------------------------- lanes

        /// <summary>
        /// Opens a lane, waiting for the server's handshake until <paramref name="deadline"/> and while <paramref name="ct"/>
        /// is not cancelled. <paramref name="what"/> names the call it is for (null: the first lane). A lane to a new server
        /// run makes every lane of the old run stale.
        /// </summary>
        IFrameTransport OpenLane(long deadline, CancellationToken ct, string what)
        {
            for (int attempt = 0; ; attempt++)
            {
                Hello hello;
                IFrameTransport lane;
                int pid;
                try { lane = _source.Open(_clientId, out hello, out pid, deadline, ct); }
                catch (NotAnsweringException e) { throw NotAnswering(e, what); }
                catch (ServerUnavailableException e)
                {
                    if (_session == 0) throw;                 // never connected: the caller's message says what to start
                    if (_source.Remote != null) throw new ServerUnavailableException(GoneText() + ". " + e.Message, e);
                    throw new ServerUnavailableException("the server this connection used is gone and no other answers: " + GoneText()
                        + (_mode == ServerMode.Headless ? " (LessPythonInvoke.Initialize starts a new one)" : "") + ". " + e.Message, e);
                }
                catch (SessionChangedException e)
                {
                    // the server restarted between its hello and our mapping: try once more with the new run
                    if (attempt > 0) throw new ServerUnavailableException("the server of " + _source.Where + " keeps restarting: " + e.Message, e);
                    continue;
                }
                try
                {
                    // a new server run must serve the module this proxy bound: a proxy never calls another module's code
                    if (_session != 0 && hello.Session != _session) _source.CheckStillServes(BoundModule);
                }
                catch
                {
                    lane.Close();
                    throw;
                }
                lock (_lock)
                {
                    if (hello.Session != _session)
                    {
                        DropAllLocked();
                        _session = hello.Session;
                    }
                    _pid = pid;
                    _mode = hello.Mode;
                }
                return lane;
            }
        }

        // ---------------------------------------------------------------- calling

        /// <summary>A synchronous call: returns the result (NdArray results are views over the lane's response file).</summary>
        public object Invoke(MethodBinding m, object[] args, CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            long deadline = Deadline();
            Slot lane = Acquire(deadline, ct, m.PyName, Thread.CurrentThread, true);
            ulong seq = Send(lane, m, args);
            return Complete(lane, m, seq, deadline, ct);
        }

        /// <summary>
        /// An asynchronous call, on behalf of the calling thread (a result's lane is held for it, its in-place request
        /// arrays are found). When a lane is free at once the frame is written and published on the calling thread;
        /// otherwise (a lane must be opened, or waited for) that happens on the call's own thread too, which then waits
        /// for the reply: the caller never blocks.
        /// </summary>
        public Task<T> InvokeAsync<T>(MethodBinding m, object[] args, CancellationToken ct)
        {
            if (ct.IsCancellationRequested) return Task.FromCanceled<T>(ct);
            long deadline = Deadline();
            Thread caller = Thread.CurrentThread;
            Slot lane;
            ulong seq = 0;
            try
            {
                lane = Acquire(deadline, ct, m.PyName, caller, false);
                if (lane != null) seq = Send(lane, m, args);
            }
            catch (OperationCanceledException)
            {
                return Task.FromCanceled<T>(ct.IsCancellationRequested ? ct : new CancellationToken(true));
            }
            catch (Exception e)
            {
                return Task.FromException<T>(e);
            }
            var tcs = new TaskCompletionSource<T>(TaskCreationOptions.RunContinuationsAsynchronously);
            var waiter = new Thread(() =>
            {
                try
                {
                    Slot l = lane;
                    ulong sq = seq;
                    if (l == null)
                    {
                        l = Acquire(deadline, ct, m.PyName, caller, true);
                        sq = Send(l, m, args);
                    }
                    tcs.TrySetResult((T)Complete(l, m, sq, deadline, ct));
                }
                catch (OperationCanceledException) { tcs.TrySetCanceled(ct); }
                catch (Exception e) { tcs.TrySetException(e); }
            });
            waiter.IsBackground = true;
            waiter.Name = "LessPy call " + m.PyName;
            waiter.Start();
            return tcs.Task;
        }

        /// <summary>Encodes the call into the lane's request buffer and sends it; gives the lane back on failure.</summary>
        ulong Send(Slot lane, MethodBinding m, object[] args, RequestStatus status = RequestStatus.Call)
        {
            IFrameTransport t = lane.Transport;
            RequestArrays inPlace = lane.Mapped != null ? lane.Mapped.InPlace : null;
            bool published = false;
            try
            {
                long payload = Codec.MeasureCall(m.NameUtf8, m.Descriptor, args, m.ArgTypes, m.ArgNames);
                if (lane.InPlaceLow >= 0 && payload > lane.InPlaceLow)
                    throw new PayloadTooLargeException("the call to " + m.PyName + " needs " + payload + " bytes of frame but the in-place request "
                        + "arrays of this call leave " + lane.InPlaceLow + " bytes below them: make them before the larger arguments grow the file, "
                        + "or pass fewer copied arguments", payload + Wire.HeaderSize, lane.Mapped.Request.Capacity);
                Span<byte> buffer = t.ReserveRequest(payload);
                int len;
                if (inPlace != null) inPlace.BeginEncoding();   // in-place request arrays check they are this call's (Codec)
                // NdArray arguments that are views (results of earlier calls) are checked again after their copy: a
                // lane taken over by another thread meanwhile would have put that call's bytes into this request
                MappedMemoryManager.BeginWatch();
                bool encoded = false;
                long sentEnd = 0;
                try
                {
                    len = Codec.WriteCall(buffer, m.NameUtf8, m.Descriptor, args, m.ArgTypes);
                    encoded = true;
                }
                finally
                {
                    if (inPlace != null) sentEnd = inPlace.EndEncoding();
                    MappedMemoryManager.EndWatch(encoded);
                }
                if (inPlace != null)
                {
                    if (sentEnd > len) len = (int)sentEnd;   // the payload covers the in-place arrays' data (NDARRAY_AT)
                    inPlace.Generation.Bump();               // in-place request arrays are now the server's: no more writes
                }
                lane.InPlaceLow = -1;
                ReleaseHeldBefore(lane, lane.Holder);
                bool sent;
                // a result that is (part of) an argument may come back as a view of the request (mapped lanes only)
                uint flags = lane.Mapped != null && status == RequestStatus.Call && m.ReturnType.Tag == Tag.NdArray ? Wire.FlagReplyInRequest : 0;
                ulong seq = t.Send(len, status, flags, out sent);
                published = true;
                if (!sent)
                {
                    Drop(lane);
                    if (_disposed) throw Disposed();
                    throw new ServerUnavailableException("cannot send the call to " + m.PyName + LostText(t) + ": " + GoneText());
                }
                return seq;
            }
            catch
            {
                if (!published)
                {
                    // nothing went out: the lane is unchanged (and keeps this thread's views and in-place arrays, if any)
                    bool keep = lane.InPlaceLow >= 0 || lane.KeepsViews;
                    lane.KeepsViews = false;
                    Return(lane, keep);
                }
                throw;
            }
        }

        /// <summary>
        /// Waits until the reply to <paramref name="seq"/> is in the lane's response file. On a timeout or cancellation the
        /// lane is set aside (the server drops or interrupts the call) and on a closed connection it is dropped; both throw.
        /// </summary>
        void AwaitReply(Slot lane, MethodBinding m, ulong seq, long deadline, CancellationToken ct, string what)
        {
            WaitOutcome outcome;
            try { outcome = lane.Transport.Wait(seq, deadline, ct); }
            catch (ProtocolException)
            {
                Drop(lane);
                throw;
            }
            switch (outcome)
            {
                case WaitOutcome.TimedOut:
                    SetAside(lane, seq);
                    if (_disposed) throw Disposed();
                    throw new CallTimeoutException(TimeoutMessage(m));
                case WaitOutcome.Cancelled:
                    SetAside(lane, seq);
                    throw new OperationCanceledException(what + " was cancelled; the server was told to drop it, or to "
                        + "interrupt it if it is running", ct);
                case WaitOutcome.Closed:
                    Drop(lane);
                    if (_disposed) throw Disposed();
                    throw new ServerUnavailableException((_folder == null ? "the connection was lost during " : "the server closed the connection during ")
                        + what + LostText(lane.Transport) + ": " + GoneText());
            }
        }

        /// <summary>Waits for the reply, decodes it and gives the lane back (held when the result has views).</summary>
        object Complete(Slot lane, MethodBinding m, ulong seq, long deadline, CancellationToken ct)
        {
            AwaitReply(lane, m, seq, deadline, ct, "the call to " + m.PyName);
            bool hold = false;
            try
            {
                object result = Decode(lane, m, out hold);
                return result;
            }
            catch (ProtocolException)
            {
                Drop(lane);
                throw;
            }
            finally
            {
                if (!lane.Transport.IsClosed) Return(lane, hold);
            }
        }

        /// <summary>Reads and decodes the arrived reply; <paramref name="hold"/> when the result has views over the lane.</summary>
        object Decode(Slot lane, MethodBinding m, out bool hold)
        {
            ReadOnlySpan<byte> payload;
            uint status = lane.Transport.ReadReply(out payload);
            return Decode(lane, m, status, payload, out hold);
        }

        /// <summary>Decodes a reply of <paramref name="status"/>: the value, or the error it carries thrown.</summary>
        object Decode(Slot lane, MethodBinding m, uint status, ReadOnlySpan<byte> payload, out bool hold)
        {
            hold = false;
            if (status == (uint)FrameStatus.Error) throw ToException(Codec.ReadError(payload), m, lane);
            if (status != (uint)FrameStatus.Value) throw new ProtocolException("the reply has status " + status + " (0 value, 1 error)");
            if (payload.Length > 0 && payload[0] == (byte)Tag.NdArrayInRequest && m.ReturnType.Tag == Tag.NdArray && lane.Mapped != null)
            {
                // the result is (part of) an argument: a view of this call's request, which stays as it is while the lane is
                // held (no call is written into it: Acquire); it expires like any result view
                DType dt;
                int[] shape;
                int offset, length;
                Codec.ReadInRequest(payload, lane.Mapped.SentLength, out dt, out shape, out offset, out length);
                ReadOnlyMemory<byte> view = lane.Mapped.RequestView(offset, length);
                lane.ResultsInRequest = true;
                hold = true;
                return new NdArray(dt, shape, view);
            }
            ReadOnlyMemory<byte> memory = m.ReturnsArrays
                ? lane.Transport.ReplyView(payload.Length)
                : ReadOnlyMemory<byte>.Empty;           // nothing will keep a view: no need to allocate one
            int pos = 0;
            WireType actual;
            object result = Codec.Read(memory, payload, ref pos, m.ReturnType, out actual);
            if (pos != payload.Length) throw new ProtocolException("the reply to " + m.PyName + " has " + (payload.Length - pos) + " bytes after its value");
            hold = m.ReturnsArrays && result != null;
            return result;
        }

        Exception ToException(ErrorFrame e, MethodBinding m, Slot lane)
        {
            string msg = e.Message.Length > 0 ? e.Message : "the call to " + m.PyName + " failed";
            switch ((ErrorKind)e.Kind)
            {
                case ErrorKind.PythonError: return new PythonException(e.PythonType, e.Message, e.Traceback);
                case ErrorKind.FunctionNotFound: return new FunctionNotFoundException(m.PyName, NotFoundText(msg, m));
                case ErrorKind.BadArguments: return new ArgumentMismatchException(msg);
                case ErrorKind.ResultMismatch: return new ResultMismatchException(ResultMismatchText(msg, m));
                case ErrorKind.PayloadTooLarge: return new PayloadTooLargeException(msg, -1, lane.Transport.ReplyCapacity);
                case ErrorKind.MalformedRequest: return new ProtocolException(msg);
                case ErrorKind.ServerError: return new LessPyException(msg);
                case ErrorKind.Cancelled: return new OperationCanceledException(msg);
                case ErrorKind.Interrupted:
                    return new CallInterruptedException("the call to " + m.PyName + " was interrupted"
                        + (_mode == ServerMode.Headless ? " (the server is stopping)" : " in the notebook (Jupyter's interrupt / stop button, or the server is stopping)")
                        + (e.Message.Length > 0 ? ": " + e.Message : ""));
                default: return new LessPyException("error kind " + e.Kind + " from the server: " + msg);
            }
        }

        // ---------------------------------------------------------------- streams (IEnumerable<T>)

        /// <summary>Takes a lane for a stream, sends its call (status Stream) and returns the lane, kept Busy until the stream ends, fails or is closed.</summary>
        internal LaneHandle OpenStream(MethodBinding m, object[] args, CancellationToken ct, out ulong seq)
        {
            ct.ThrowIfCancellationRequested();
            long deadline = Deadline();
            Slot lane = Acquire(deadline, ct, m.PyName, Thread.CurrentThread, true);
            seq = Send(lane, m, args, RequestStatus.Stream);
            lock (_lock) lane.StreamName = m.PyName;
            return lane;
        }

        /// <summary>Asks the stream's lane for its next item (status Next), or to close the stream (status Close).</summary>
        internal ulong SendStreamRequest(LaneHandle stream, MethodBinding m, RequestStatus status)
        {
            var lane = (Slot)stream;
            if (_disposed) throw Disposed();
            lock (_lock) lane.StreamParked = false;
            lane.Transport.ExpireReplyViews();          // the previous item's views die now: the reply is about to change
            bool sent;
            ulong seq = lane.Transport.Send(0, status, 0, out sent);
            if (!sent)
            {
                Drop(lane);
                throw new ServerUnavailableException("cannot ask for the next item of " + m.PyName + ": " + GoneText());
            }
            return seq;
        }

        /// <summary>
        /// Closes a stream without waiting (a cancelled token must end the enumeration at once, even when the server does
        /// not answer): sends Close and sets the lane aside; it comes back once the server's answer to the Close has
        /// arrived. No cancel is written: the server is to run the Close (the generator's finally blocks), not drop it.
        /// </summary>
        internal void CloseStreamNoWait(LaneHandle stream, MethodBinding m)
        {
            ulong seq = SendStreamRequest(stream, m, RequestStatus.Close);     // throws (lane dropped) when the connection is gone
            PutAside((Slot)stream, seq);
        }

        /// <summary>
        /// Waits for a stream's reply: an item (returned), the end (<paramref name="end"/> true, the lane given back), or an
        /// error (thrown, the lane given back: the server has dropped the stream). On a timeout or cancellation the lane is
        /// set aside as for a call. When this throws, the stream's lane is no longer the caller's.
        /// </summary>
        internal object StreamStep(LaneHandle stream, MethodBinding m, ulong seq, CancellationToken ct, out bool end)
        {
            var lane = (Slot)stream;
            end = false;
            AwaitReply(lane, m, seq, Deadline(), ct, "the stream of " + m.PyName);
            bool hold;
            object item;
            try
            {
                ReadOnlySpan<byte> payload;
                uint status = lane.Transport.ReadReply(out payload);
                if (status == (uint)FrameStatus.End)
                {
                    end = true;
                    Return(lane, false);
                    return null;
                }
                item = Decode(lane, m, status, payload, out hold);
            }
            catch (ProtocolException)
            {
                Drop(lane);
                throw;
            }
            catch
            {
                Return(lane, false);                  // an error reply: the server has dropped the stream
                throw;
            }
            lock (_lock) lane.StreamParked = true;     // until the enumerator asks again: the lane waits for the app, not the server
            return item;
        }

        // ---------------------------------------------------------------- in-place request arrays

        /// <summary>
        /// An array inside the current thread's lane request file (from the end of the payload area downward,
        /// aligned to Wire.NdArrayAlign), writable until this thread's next call on this connection sends it.
        /// </summary>
        public NdArray NewRequestArray(DType dtype, int[] shape)
        {
            long count = 1;
            for (int i = 0; i < shape.Length; i++)
            {
                if (shape[i] < 0) throw new ArgumentOutOfRangeException(nameof(shape), "a dimension is negative");
                count *= shape[i];
                if (count > int.MaxValue) throw new ArgumentException("the shape has more than int.MaxValue elements", nameof(shape));
            }
            if (shape.Length > Codec.MaxDims) throw new ArgumentException("at most " + Codec.MaxDims + " dimensions", nameof(shape));
            long size = count * dtype.ItemSize;
            Thread me = Thread.CurrentThread;
            Slot lane = null;
            lock (_lock)
            {
                if (_disposed) throw Disposed();
                for (int i = 0; i < _lanes.Count; i++)
                    if (_lanes[i].State == LaneState.Held && _lanes[i].Holder == me && !_lanes[i].ResultsInRequest) { lane = _lanes[i]; break; }
                if (lane != null)
                {
                    lane.State = LaneState.Busy;      // keeps its result views: only the request file changes
                    lane.KeepsViews = true;
                }
            }
            if (lane == null) lane = Acquire(Deadline(), CancellationToken.None, "an in-place request array", me, true);
            try
            {
                if (lane.Mapped == null) throw new NotSupportedException("in-place request arrays need a connection through shared memory");
                long offset = lane.Mapped.PlaceRequestArray(size, ref lane.InPlaceLow);
                return new NdArray(dtype, (int[])shape.Clone(), lane.Mapped.RequestArrayMemory(offset, (int)size), lane.Mapped.InPlace,
                    lane.Mapped.InPlace.Generation.Value, offset);
            }
            finally
            {
                lane.KeepsViews = false;
                Return(lane, true);
            }
        }

        // ---------------------------------------------------------------- closing

        /// <summary>
        /// Set for a connection that started its server without keepAlive: <see cref="Dispose()"/> sends SHUTDOWN, so that
        /// server stops as soon as it is idle instead of when this process ends (a server shared with other apps serves
        /// them first: PROTOCOL.md section 3).
        /// </summary>
        internal bool StopsServer;

        /// <summary>
        /// Closes every lane: an idle one at once, one carrying a call when that call ends (its connection is shut down
        /// now, which wakes the waiting thread and tells the server to interrupt the call). With
        /// <paramref name="shutdown"/> first sends SHUTDOWN on one lane. Never writes into a buffer a running call reads.
        /// Idempotent.
        /// </summary>
        public void Dispose(bool shutdown)
        {
            lock (_lock)
            {
                if (_disposed) return;
                _disposed = true;
                if (shutdown)
                {
                    foreach (Slot l in _lanes)
                        if (l.Transport.SendShutdown()) break;
                }
                for (int i = _lanes.Count - 1; i >= 0; i--)
                {
                    Slot l = _lanes[i];
                    if (l.State == LaneState.Busy)
                    {
                        l.CloseWhenDone = true;
                        l.Transport.Abort();
                        continue;
                    }
                    l.Transport.Close();
                    _lanes.RemoveAt(i);
                }
                Monitor.PulseAll(_lock);
            }
        }

        ObjectDisposedException Disposed() { return new ObjectDisposedException("LessPy connection to " + _source.Where); }

        /// <summary>Closes the connection; SHUTDOWN when it started its server without keepAlive (<see cref="StopsServer"/>).</summary>
        public void Dispose() { Dispose(StopsServer); }
    }
}
