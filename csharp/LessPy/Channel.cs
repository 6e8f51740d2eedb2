using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Security.Cryptography;
using System.Threading;
using System.Threading.Tasks;

namespace LessPy
{
    /// <summary>
    /// The connection of one proxy to one server: a pool of lanes (PROTOCOL.md sections 2 and 3), opened lazily up to
    /// a maximum, and the call round trip (sections 6 and 7). Thread-safe.
    /// <para>
    /// The pool rule (data integrity): a thread starting a call first releases the lanes it holds (their result views
    /// die), reclaims set-aside lanes whose late reply has come, then takes a free lane (its own last one first), else
    /// opens a new lane, else takes a lane held by a dead thread, else the least recently used held lane (its views
    /// die: they throw, never show other data; but while a set-aside lane may come back, it first waits up to a second
    /// for that), else waits for a lane up to the call timeout. A lane holding in-place request arrays of a live thread
    /// is never taken over (that thread may be writing through a span, which cannot be checked). A lane the server
    /// refuses as over its per-client limit (its count of our closed lanes lags) counts as "cannot open" for 50 ms. A result with NdArray
    /// views keeps its lane held by the calling thread until that thread's next call; any other result frees it at once.
    /// </para>
    /// </summary>
    internal sealed unsafe class Channel : IDisposable
    {
        /// <summary>Lanes per proxy: the server's limit per client (MAX_LANES_PER_CLIENT), as CSHARP.md says.</summary>
        public const int DefaultMaxLanes = 64;
        /// <summary>A free lane idle this long is checked for a closed connection before use (a server restart).</summary>
        static readonly long IdleCheckTicks = Stopwatch.Frequency / 10;          // 100 ms
        /// <summary>How long a caller waits for a set-aside lane before taking a lane another live thread holds.</summary>
        static readonly long StealGraceTicks = Stopwatch.Frequency;              // 1 s
        /// <summary>After the server refused a lane as over its per-client limit, no lane is opened for this long.</summary>
        static readonly long RefusedTicks = Stopwatch.Frequency / 20;            // 50 ms
        /// <summary>Part of the server's refusal of a lane over its per-client limit (server.py, MAX_LANES_PER_CLIENT).</summary>
        const string LanesPerClientText = "lanes open, the limit per client";
        /// <summary>Room left below in-place request arrays for the call frame itself.</summary>
        const long MinFrameRoom = 4096;

        readonly WorkFolder _folder;
        readonly object _lock = new object();
        readonly List<Lane> _lanes = new List<Lane>();
        readonly int _maxLanes;
        readonly ulong _clientId;
        int _opening;
        int _waiters;
        long _refusedUntil;             // a Stopwatch timestamp: no lane is opened before it (the server refused one)
        ulong _session;                 // the server run our lanes belong to (0 before the first lane)
        int _pid = -1;
        ServerMode _mode;
        TimeSpan _timeout = TimeSpan.FromSeconds(100);
        long _timeoutTicks = 100 * Stopwatch.Frequency;
        volatile bool _disposed;

        Channel(WorkFolder folder, int maxLanes)
        {
            _folder = folder;
            _maxLanes = maxLanes;
            _clientId = NewClientId();
        }

        static long _proxies;

        /// <summary>
        /// An id for this proxy's lanes (the server counts clients by it). It only has to differ from the other clients
        /// connected at the same time, so no cryptographic generator (whose start-up costs Mono ~10 ms): the process
        /// id, a high-resolution clock and a per-process counter, mixed.
        /// </summary>
        static ulong NewClientId()
        {
            ulong x = ((ulong)(uint)Lane.CurrentPid << 32) ^ (ulong)Stopwatch.GetTimestamp()
                ^ ((ulong)Interlocked.Increment(ref _proxies) * 0x9E3779B97F4A7C15UL);
            x ^= x >> 33;
            x *= 0xFF51AFD7ED558CCDUL;
            x ^= x >> 33;
            return x == 0 ? 1 : x;
        }

        /// <summary>Connects to the folder's server and opens the first lane; throws when the folder is not served.</summary>
        public static Channel Open(WorkFolder folder, int maxLanes = DefaultMaxLanes)
        {
            var c = new Channel(folder, maxLanes);
            try
            {
                Lane first = c.OpenLane();
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

        public string Folder { get { return _folder.Path; } }
        public int ServerPid { get { return _pid; } }
        public ServerMode Mode { get { return _mode; } }
        /// <summary>The module this proxy bound (a path; "" for a server that names none; null: not checked), set by LessPythonInvoke.</summary>
        internal string BoundModule;
        public bool IsDisposed { get { return _disposed; } }

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

        Lane OpenLane()
        {
            // Connect and Initialize: no CallTimeout is set yet, so the first lane waits the handshake's own 10 s
            return OpenLane(Stopwatch.GetTimestamp() + FirstLaneTicks, CancellationToken.None, null);
        }

        /// <summary>How long the first lane (Connect, Initialize) waits for the server's handshake.</summary>
        static readonly long FirstLaneTicks = 10 * Stopwatch.Frequency;

        /// <summary>
        /// Opens a lane, waiting for the server's handshake until <paramref name="deadline"/> and while <paramref name="ct"/>
        /// is not cancelled (issue 14 item 12). <paramref name="what"/> names the call it is for (null: the first lane).
        /// </summary>
        Lane OpenLane(long deadline, CancellationToken ct, string what)
        {
            byte[] key;
            try { key = _folder.ReadKey(); }
            catch (IOException e) { throw new ServerUnavailableException("cannot read " + _folder.File(WorkFolder.KeyFile) + ": " + e.Message, e); }
            catch (UnauthorizedAccessException e) { throw new ServerUnavailableException("cannot read " + _folder.File(WorkFolder.KeyFile) + ": " + e.Message, e); }
            for (int attempt = 0; ; attempt++)
            {
                Hello hello;
                Lane lane;
                try { lane = Lane.Open(_folder, key, _clientId, out hello, deadline, ct); }
                catch (NotAnsweringException e) { throw NotAnswering(e, what); }
                catch (ServerUnavailableException e)
                {
                    if (_session == 0) throw;                 // never connected: the caller's message says what to start
                    throw new ServerUnavailableException("the server this connection used is gone and no other answers: " + GoneText()
                        + (_mode == ServerMode.Headless ? " (LessPythonInvoke.Initialize starts a new one)" : "") + ". " + e.Message, e);
                }
                catch (SessionChangedException e)
                {
                    // the server restarted between its hello and our mapping: try once more with the new run
                    if (attempt > 0) throw new ServerUnavailableException("the server of " + _folder.Path + " keeps restarting: " + e.Message, e);
                    continue;
                }
                int pid = _folder.ReadNumber(WorkFolder.PidFile);
                // a new server run: it must serve the module this proxy bound, else the lane closes and this throws (issue 14 item 4)
                if (_session != 0 && hello.Session != _session) _folder.CheckStillServes(BoundModule, lane);
                lock (_lock)
                {
                    if (hello.Session != _session)
                    {
                        // another server run (issue 10 item 2): every lane of the old run is stale
                        DropAllLocked();
                        _session = hello.Session;
                    }
                    _pid = pid;
                    _mode = hello.Mode;
                }
                return lane;
            }
        }

        /// <summary>Closes every lane (the server went away or changed); a Busy lane closes when its call ends.</summary>
        void DropAllLocked()
        {
            for (int i = _lanes.Count - 1; i >= 0; i--)
            {
                Lane l = _lanes[i];
                if (l.State == LaneState.Busy)
                {
                    l.CloseWhenDone = true;
                    continue;
                }
                l.Close();
                _lanes.RemoveAt(i);
            }
            if (_waiters > 0) Monitor.PulseAll(_lock);
        }

        void RemoveLocked(Lane lane)
        {
            lane.Close();
            _lanes.Remove(lane);
            if (_waiters > 0) Monitor.PulseAll(_lock);
        }

        /// <summary>
        /// Takes a lane for a call by thread <paramref name="me"/> (see the pool rule above); the lane is Busy. Without
        /// <paramref name="mayBlock"/> returns null where it would open a lane or wait for one.
        /// </summary>
        Lane Acquire(long deadline, CancellationToken ct, string what, Thread me, bool mayBlock)
        {
            while (true)
            {
                bool again;
                Lane lane = AcquireOnce(deadline, ct, what, me, mayBlock, out again);
                if (!again) return lane;
            }
        }

        /// <summary>One try of <see cref="Acquire"/>; <paramref name="again"/> when the server refused a new lane (try again).</summary>
        Lane AcquireOnce(long deadline, CancellationToken ct, string what, Thread me, bool mayBlock, out bool again)
        {
            again = false;
            long stealAfter = 0;
            bool collected = false;
            bool keepViews = false;
            lock (_lock)
            {
                while (true)
                {
                    if (_disposed) throw Disposed();
                    // a lane this thread holds is its to reuse; its views (and those of any other lane it holds) stay
                    // valid while the arguments are encoded (a result view may be an argument) and die before the
                    // call is published (Send)
                    // (one whose result view lies in its request file is not: the call goes on another lane, and that view
                    // dies once the call is published, as the views of every lane this thread holds do)
                    Lane mine = null;
                    bool holds = false;
                    for (int i = 0; i < _lanes.Count; i++)
                    {
                        Lane l = _lanes[i];
                        if (l.State == LaneState.Held && l.Holder == me)
                        {
                            holds = true;
                            if (l.ResultsInRequest) continue;
                            if (mine == null || l.InPlaceLow >= 0) mine = l;   // in-place request arrays pin the lane
                        }
                        else if (l.State == LaneState.SetAside && l.ReplyCameFor(l.Abandoned))
                            l.State = LaneState.Free;
                    }
                    if (mine != null)
                    {
                        mine.KeepsViews = true;
                        return Take(mine, me);
                    }
                    Lane pick = null;
                    for (int i = 0; i < _lanes.Count; i++)
                    {
                        Lane l = _lanes[i];
                        if (l.State != LaneState.Free) continue;
                        if (l.LastThread == me) { pick = l; break; }
                        if (pick == null) pick = l;
                    }
                    if (pick != null)
                    {
                        if (Stopwatch.GetTimestamp() - pick.LastUsed > IdleCheckTicks && !pick.LooksOpen())
                        {
                            // the server closed it (it stopped or restarted): a new lane tells which (OpenLane)
                            RemoveLocked(pick);
                            continue;
                        }
                        pick.KeepsViews = holds;
                        return Take(pick, me);
                    }
                    if (_lanes.Count + _opening < _maxLanes && Stopwatch.GetTimestamp() >= _refusedUntil)
                    {
                        if (!mayBlock) return null;
                        keepViews = holds;
                        break;                                       // open a new lane, outside the lock
                    }
                    Lane victim = null, own = null;
                    bool dead = false, aside = false;
                    int inPlace = 0;
                    for (int i = 0; i < _lanes.Count; i++)
                    {
                        Lane l = _lanes[i];
                        if (l.State == LaneState.SetAside) aside = true;
                        if (l.State != LaneState.Held || dead) continue;
                        if (l.Holder == me) { own = l; continue; }           // this thread's own views die last
                        if (!l.Holder.IsAlive) { victim = l; dead = true; continue; }
                        // never a lane whose in-place request arrays a live thread may be writing through a span right now: a
                        // span cannot be checked, and its writes would land in the new call's request (it comes free with
                        // its holder's next call)
                        if (l.InPlaceLow >= 0) { inPlace++; continue; }
                        if (victim == null || l.LastUsed < victim.LastUsed) victim = l;
                    }
                    if (victim == null) victim = own;
                    if (victim == null)
                    {
                        // every lane is busy: lanes of open streams whose enumerators are waiting for nothing (parked) come
                        // back only when the app disposes them, so a garbage-collected one is taken over (the server closes
                        // its generator when the new call arrives), and a pool held entirely by streams fails now
                        Lane orphan = null;
                        int parked = 0;
                        for (int i = 0; i < _lanes.Count; i++)
                        {
                            Lane l = _lanes[i];
                            if (l.State != LaneState.Busy || !l.StreamParked) continue;
                            parked++;
                            if (l.StreamAbandoned && orphan == null) orphan = l;
                        }
                        if (orphan != null)
                        {
                            Release(orphan);                         // its last item's views die
                            orphan.KeepsViews = holds;
                            return Take(orphan, me);
                        }
                        if (parked > 0 && !collected && mayBlock)
                        {
                            // enumerators dropped without Dispose are found by a collection: their finalizers mark their lanes
                            collected = true;
                            Monitor.Exit(_lock);
                            try
                            {
                                GC.Collect();
                                GC.WaitForPendingFinalizers();
                            }
                            finally { Monitor.Enter(_lock); }
                            continue;
                        }
                        if (parked > 0 && parked == _lanes.Count && _opening == 0 && _lanes.Count >= _maxLanes)
                            throw StreamsHoldLanes(what);
                    }
                    long now = Stopwatch.GetTimestamp();
                    // a live thread's views die only when no set-aside lane is about to come back (its late reply
                    // usually follows the cancel within milliseconds): wait a little for one first
                    if (victim != null && !dead && aside)
                    {
                        if (stealAfter == 0) stealAfter = now + StealGraceTicks;
                        if (now < stealAfter && now < deadline) victim = null;
                    }
                    if (victim != null)
                    {
                        Release(victim);                             // its views throw from now on
                        victim.KeepsViews = holds;
                        return Take(victim, me);
                    }
                    if (deadline != long.MaxValue && now >= deadline)
                    {
                        string streams = OpenStreamsText();
                        throw new CallTimeoutException("no lane of the connection to " + _folder.Path + " came free for " + what + " within "
                            + TimeoutText(_timeout) + " (ILessPyConnection.CallTimeout): all " + _lanes.Count + " lanes carry calls that are "
                            + "running, or abandoned calls still running in Python"
                            + (inPlace > 0 ? ", or in-place request arrays (ILessPyConnection.NewRequestArray) of " + inPlace + " live threads "
                                + "that have not sent them yet (a thread's next call sends them and frees its lane)" : "")
                            + (streams.Length > 0 ? ", or open streams: " + streams + " whose enumerators were neither run to the end nor disposed "
                                + "(dispose them: a foreach loop does)" : ""));
                    }
                    ct.ThrowIfCancellationRequested();
                    if (!mayBlock) return null;
                    _waiters++;
                    try { Monitor.Wait(_lock, 10); }              // also polls set-aside lanes for their late replies
                    finally { _waiters--; }
                }
                _opening++;
            }
            Lane fresh;
            try { fresh = OpenLane(deadline, ct, "the call to " + what); }
            catch (HandshakeException e)
            {
                // the server still counts lanes this client has closed (its side of a close lags the client's): it refuses
                // while the client's own count is under the limit. Treat the pool as full for a moment (take a lane over,
                // or wait for one) instead of failing the call
                if (e.Result != (int)HandshakeResult.Busy || !e.ServerText.Contains(LanesPerClientText)) throw;
                lock (_lock)
                {
                    _opening--;
                    if (_lanes.Count == 0) throw;
                    _refusedUntil = Stopwatch.GetTimestamp() + RefusedTicks;
                }
                again = true;
                return null;
            }
            catch
            {
                lock (_lock) _opening--;
                throw;
            }
            lock (_lock)
            {
                // the new lane counts as opening until it is in the pool: a gap between the two would let another thread
                // open one lane too many, which the server refuses (its per-client limit)
                _opening--;
                if (_disposed)
                {
                    fresh.Close();
                    throw Disposed();
                }
                _lanes.Add(fresh);
                fresh.KeepsViews = keepViews;
                return Take(fresh, me);
            }
        }

        /// <summary>The open streams whose enumerators wait for nothing, by function ("frames ×3, rows"); "" when none.</summary>
        string OpenStreamsText()
        {
            var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < _lanes.Count; i++)
            {
                Lane l = _lanes[i];
                if (l.State != LaneState.Busy || !l.StreamParked || l.StreamName == null) continue;
                int n;
                counts.TryGetValue(l.StreamName, out n);
                counts[l.StreamName] = n + 1;
            }
            var parts = new List<string>();
            foreach (KeyValuePair<string, int> kv in counts) parts.Add(kv.Value == 1 ? kv.Key : kv.Key + " x" + kv.Value);
            return string.Join(", ", parts);
        }

        /// <summary>Every lane is held by an open stream that only the app can end: the call cannot start, and waiting would not help.</summary>
        LanesExhaustedException StreamsHoldLanes(string what)
        {
            return new LanesExhaustedException("all " + _lanes.Count + " lanes of the connection to " + _folder.Path + " (its limit) are held by "
                + "open streams (IEnumerable<T> methods: " + OpenStreamsText() + ") whose enumerators were neither run to the end nor disposed, so "
                + what + " cannot start. Each open enumerator keeps its lane (and its Python generator) until it ends or is disposed: "
                + "dispose enumerators you stop early (a foreach loop does, so do LINQ's First() and Take()), or copy the items with ToList(). "
                + "An enumerator that was dropped without Dispose gives its lane back once the garbage collector has found it", _lanes.Count);
        }

        static Lane Take(Lane l, Thread me)
        {
            l.StreamName = null;
            l.StreamParked = false;
            l.StreamAbandoned = false;
            l.State = LaneState.Busy;
            l.Holder = me;
            l.LastThread = me;
            return l;
        }

        /// <summary>
        /// Just before a call is published: the views of the lane it uses die (its response file is about to change),
        /// and so do those of every other lane this thread holds (they are free for other threads from now on).
        /// </summary>
        void ReleaseHeldBefore(Lane lane, Thread me)
        {
            lane.Results.Bump();
            if (!lane.KeepsViews) return;            // this thread held no lane when the call started
            lane.KeepsViews = false;
            lock (_lock)
            {
                bool freed = false;
                for (int i = 0; i < _lanes.Count; i++)
                {
                    Lane l = _lanes[i];
                    if (l != lane && l.State == LaneState.Held && l.Holder == me && l.InPlaceLow < 0)
                    {
                        Release(l);
                        freed = true;
                    }
                }
                if (freed && _waiters > 0) Monitor.PulseAll(_lock);
            }
        }

        static void Release(Lane l)
        {
            l.Results.Bump();
            l.Requests.Bump();
            l.InPlaceLow = -1;
            l.ResultsInRequest = false;
            l.Holder = null;
            l.State = LaneState.Free;
        }

        /// <summary>Gives a lane back after its call: held for <paramref name="holder"/> when the result has views.</summary>
        void Return(Lane l, bool hold)
        {
            lock (_lock)
            {
                l.LastUsed = Stopwatch.GetTimestamp();
                if (l.CloseWhenDone || _disposed)
                {
                    RemoveLocked(l);
                    return;
                }
                if (hold) l.State = LaneState.Held;
                else
                {
                    l.Holder = null;
                    l.State = LaneState.Free;
                }
                if (_waiters > 0) Monitor.Pulse(_lock);
            }
        }

        void SetAside(Lane l, ulong seq)
        {
            l.Cancel(seq);
            PutAside(l, seq);
        }

        /// <summary>Puts a held lane aside until the answer to request <paramref name="seq"/> has arrived (or drops it when it is to close).</summary>
        void PutAside(Lane l, ulong seq)
        {
            lock (_lock)
            {
                l.Abandoned = seq;
                l.Holder = null;
                l.LastUsed = Stopwatch.GetTimestamp();
                if (l.CloseWhenDone || _disposed) RemoveLocked(l);
                else l.State = LaneState.SetAside;
            }
        }

        void Drop(Lane l)
        {
            lock (_lock) RemoveLocked(l);
        }

        ObjectDisposedException Disposed() { return new ObjectDisposedException("LessPy connection to " + _folder.Path); }

        // ---------------------------------------------------------------- calling

        /// <summary>A synchronous call: returns the result (NdArray results are views over the lane's response file).</summary>
        public object Invoke(MethodBinding m, object[] args, CancellationToken ct)
        {
            ct.ThrowIfCancellationRequested();
            long deadline = Deadline();
            Lane lane = Acquire(deadline, ct, m.PyName, Thread.CurrentThread, true);
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
            Lane lane;
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
                    Lane l = lane;
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

        /// <summary>Encodes the call into the lane's request file and publishes it; gives the lane back on failure.</summary>
        ulong Send(Lane lane, MethodBinding m, object[] args, RequestStatus status = RequestStatus.Call)
        {
            bool published = false;
            try
            {
                long payload = Codec.MeasureCall(m.NameUtf8, m.Descriptor, args, m.ArgTypes, m.ArgNames);
                if (lane.InPlaceLow >= 0)
                {
                    if (payload > lane.InPlaceLow)
                        throw new PayloadTooLargeException("the call to " + m.PyName + " needs " + payload + " bytes of frame but the in-place request "
                            + "arrays of this call leave " + lane.InPlaceLow + " bytes below them: make them before the larger arguments grow the file, "
                            + "or pass fewer copied arguments", payload + Wire.HeaderSize, lane.Request.Capacity);
                }
                else lane.Request.EnsurePayload(payload);
                int len;
                lane.Encoder = Thread.CurrentThread;        // in-place request arrays check they are this call's (Codec)
                lane.SentEnd = 0;
                // NdArray arguments that are views (results of earlier calls) are checked again after their copy: a
                // lane taken over by another thread meanwhile would have put that call's bytes into this request
                MappedMemoryManager.BeginWatch();
                bool encoded = false;
                try
                {
                    len = Codec.WriteCall(new Span<byte>(lane.Request.Base + Wire.HeaderSize, lane.Request.PayloadCapacity),
                        m.NameUtf8, m.Descriptor, args, m.ArgTypes);
                    encoded = true;
                }
                finally
                {
                    lane.Encoder = null;
                    MappedMemoryManager.EndWatch(encoded);
                }
                if (lane.SentEnd > len) len = (int)lane.SentEnd;   // the payload covers the in-place arrays' data (NDARRAY_AT)
                lane.Requests.Bump();                    // in-place request arrays are now the server's: no more writes
                lane.InPlaceLow = -1;
                ReleaseHeldBefore(lane, lane.Holder);
                bool sent;
                uint flags = status == RequestStatus.Call && m.ReturnType.Tag == Tag.NdArray ? Wire.FlagReplyInRequest : 0;
                ulong seq = lane.Publish(len, status, flags, out sent);
                published = true;
                if (!sent)
                {
                    Drop(lane);
                    if (_disposed) throw Disposed();
                    throw new ServerUnavailableException("cannot send the call to " + m.PyName + ": " + GoneText());
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
        void AwaitReply(Lane lane, MethodBinding m, ulong seq, long deadline, CancellationToken ct, string what)
        {
            WaitOutcome outcome;
            try { outcome = lane.Wait(seq, deadline, ct); }
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
                    throw new ServerUnavailableException("the server closed the connection during " + what + ": " + GoneText());
            }
        }

        /// <summary>Waits for the reply, decodes it and gives the lane back (held when the result has views).</summary>
        object Complete(Lane lane, MethodBinding m, ulong seq, long deadline, CancellationToken ct)
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
                if (!lane.Closed) Return(lane, hold);
            }
        }

        object Decode(Lane lane, MethodBinding m, out bool hold)
        {
            hold = false;
            Mapping resp = lane.Response;
            resp.Refresh();
            byte* h = resp.Base;
            ulong len = *(ulong*)(h + Wire.OffLength);
            uint status = *(uint*)(h + Wire.OffStatus);
            if (len > (ulong)resp.PayloadCapacity)
                throw new ProtocolException("the reply says its payload is " + len + " bytes but " + resp.Path + " holds " + resp.PayloadCapacity);
            // the header's page was just read; a payload beyond it is read only once the file is known to hold it (a
            // truncated file would raise SIGBUS, issue 14 item 9)
            if (Wire.HeaderSize + (long)len > 4096) resp.CheckCovers(Wire.HeaderSize + (long)len);
            if (status == (uint)FrameStatus.Error)
                throw ToException(Codec.ReadError(new ReadOnlySpan<byte>(h + Wire.HeaderSize, (int)len)), m, lane);
            if (status != (uint)FrameStatus.Value) throw new ProtocolException("the reply has status " + status + " (0 value, 1 error)");
            if (len > 0 && h[Wire.HeaderSize] == (byte)Tag.NdArrayInRequest && m.ReturnType.Tag == Tag.NdArray)
            {
                // the result is (part of) an argument: a view of this call's request, which stays as it is while the lane is
                // held (no call is written into it: Acquire); it expires like any result view
                DType dt;
                int[] shape;
                int offset, length;
                Codec.ReadInRequest(new ReadOnlySpan<byte>(h + Wire.HeaderSize, (int)len), lane.SentLength, out dt, out shape, out offset, out length);
                lane.Request.CheckCovers(Wire.HeaderSize + (long)offset + length);
                var view = new MappedMemoryManager(lane.Request.Base + Wire.HeaderSize + offset, length, lane.Results, lane.Request.Keeper).Memory;
                lane.ResultsInRequest = true;
                hold = true;
                return new NdArray(dt, shape, view);
            }
            ReadOnlyMemory<byte> memory = m.ReturnsArrays
                ? new MappedMemoryManager(h + Wire.HeaderSize, (int)len, lane.Results, resp.Keeper).Memory
                : ReadOnlyMemory<byte>.Empty;           // nothing will keep a view: no need to allocate one
            var span = new ReadOnlySpan<byte>(h + Wire.HeaderSize, (int)len);
            int pos = 0;
            WireType actual;
            object result = Codec.Read(memory, span, ref pos, m.ReturnType, out actual);
            if (pos != (int)len) throw new ProtocolException("the reply to " + m.PyName + " has " + ((int)len - pos) + " bytes after its value");
            hold = m.ReturnsArrays && result != null;
            return result;
        }

        Exception ToException(ErrorFrame e, MethodBinding m, Lane lane)
        {
            string msg = e.Message.Length > 0 ? e.Message : "the call to " + m.PyName + " failed";
            switch ((ErrorKind)e.Kind)
            {
                case ErrorKind.PythonError: return new PythonException(e.PythonType, e.Message, e.Traceback);
                case ErrorKind.FunctionNotFound: return new FunctionNotFoundException(m.PyName, msg);
                case ErrorKind.BadArguments: return new ArgumentMismatchException(msg);
                case ErrorKind.ResultMismatch: return new ResultMismatchException(msg);
                case ErrorKind.PayloadTooLarge: return new PayloadTooLargeException(msg, -1, lane.Response.Capacity);
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
        internal Lane OpenStream(MethodBinding m, object[] args, CancellationToken ct, out ulong seq)
        {
            ct.ThrowIfCancellationRequested();
            long deadline = Deadline();
            Lane lane = Acquire(deadline, ct, m.PyName, Thread.CurrentThread, true);
            seq = Send(lane, m, args, RequestStatus.Stream);
            lock (_lock) lane.StreamName = m.PyName;
            return lane;
        }

        /// <summary>Asks the stream's lane for its next item (status Next), or to close the stream (status Close).</summary>
        internal ulong SendStreamRequest(Lane lane, MethodBinding m, RequestStatus status)
        {
            if (_disposed) throw Disposed();
            lock (_lock) lane.StreamParked = false;
            lane.Results.Bump();                       // the previous item's views die now: the response file is about to change
            bool sent;
            ulong seq = lane.Publish(0, status, out sent);
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
        internal void CloseStreamNoWait(Lane lane, MethodBinding m)
        {
            ulong seq = SendStreamRequest(lane, m, RequestStatus.Close);     // throws (lane dropped) when the connection is gone
            PutAside(lane, seq);
        }

        /// <summary>
        /// Waits for a stream's reply: an item (returned), the end (<paramref name="end"/> true, the lane given back), or an
        /// error (thrown, the lane given back: the server has dropped the stream). On a timeout or cancellation the lane is
        /// set aside as for a call. When this throws, the stream's lane is no longer the caller's.
        /// </summary>
        internal object StreamStep(Lane lane, MethodBinding m, ulong seq, CancellationToken ct, out bool end)
        {
            end = false;
            AwaitReply(lane, m, seq, Deadline(), ct, "the stream of " + m.PyName);
            lane.Response.Refresh();
            if (*(uint*)(lane.Response.Base + Wire.OffStatus) == (uint)FrameStatus.End)
            {
                end = true;
                Return(lane, false);
                return null;
            }
            bool hold;
            object item;
            try { item = Decode(lane, m, out hold); }
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

        // ---------------------------------------------------------------- messages

        static string TimeoutText(TimeSpan t)
        {
            return t.TotalSeconds >= 1 ? t.TotalSeconds.ToString("0.###") + " s" : t.TotalMilliseconds.ToString("0.###") + " ms";
        }

        string TimeoutMessage(MethodBinding m)
        {
            string head = "the call to " + m.PyName + " did not return within " + TimeoutText(_timeout) + " (ILessPyConnection.CallTimeout); "
                + "the server was told to abandon it (a call not yet started never runs; a running one is interrupted where Python allows) "
                + "and the next call goes on another lane";
            char state = ServerState(_pid);
            if (state == '\0') return head + ". The server (pid " + _pid + ") is no longer running: it has stopped or crashed";
            if (state == 'T' || state == 't') return head + ". The server (pid " + _pid + ") is alive but not answering" + StateText(_pid, state);
            if (_mode == ServerMode.Notebook)
                return head + ". This notebook runs calls on the kernel's main thread, between cells: a running cell or an earlier call may "
                    + "delay it. Wait for it, raise CallTimeout, or serve with %lesspy serve --threaded";
            return head;
        }

        string GoneText()
        {
            if (_mode == ServerMode.Headless)
            {
                // a server that is exiting closes its connections a moment before its process is gone: give it that moment
                char state = ServerState(_pid);
                for (int i = 0; i < 10 && state != '\0'; i++)
                {
                    Thread.Sleep(20);
                    state = ServerState(_pid);
                }
                if (state != '\0')
                    return "the headless server (pid " + _pid + ") closed this connection but is still running" + StateText(_pid, state)
                        + "; see " + _folder.File(WorkFolder.LogFile);
                return "the headless server (pid " + _pid + ") has stopped or crashed; see " + _folder.File(WorkFolder.LogFile);
            }
            return "the notebook's lesspy server (kernel pid " + _pid + ") has stopped: the kernel restarted or died, or %lesspy stop ran; "
                + "run %lesspy serve again";
        }

        /// <summary>
        /// The state letter of process <paramref name="pid"/> as /proc shows it ('R' running, 'S' sleeping, 'T' stopped ...),
        /// '?' when it is alive but its state cannot be read (another system, another user), '\0' when it is gone.
        /// </summary>
        internal static char ServerState(int pid)
        {
            if (pid <= 0) return '\0';
            if (!Posix.IsLinux)
            {
                try
                {
                    using (var p = Process.GetProcessById(pid)) return p.HasExited ? '\0' : '?';
                }
                catch (ArgumentException) { return '\0'; }
                catch (InvalidOperationException) { return '\0'; }
            }
            if (!Posix.ProcessAlive(pid)) return '\0';
            try
            {
                string stat = Posix.ReadAllText("/proc/" + pid + "/stat");
                int close = stat.LastIndexOf(')');
                return close > 0 && close + 2 < stat.Length ? stat[close + 2] : '?';
            }
            catch (IOException) { return '?'; }
            catch (UnauthorizedAccessException) { return '?'; }
        }

        /// <summary>What a live server's state means for a caller that got no answer (empty for a plain running state).</summary>
        static string StateText(int pid, char state)
        {
            if (state == 'T' || state == 't')
                return "; it is stopped (process state " + state + ": SIGSTOP, Ctrl-Z or a debugger; `kill -CONT " + pid + "` resumes it)";
            if (state == 'D') return " (process state D: blocked in the kernel, e.g. on a slow or full disk)";
            return "";
        }

        /// <summary>
        /// The error for a lane whose handshake did not come in time: a live server is "not answering" (a
        /// <see cref="CallTimeoutException"/> for a call, <see cref="ServerUnavailableException"/> for Connect), a
        /// dead one has stopped or crashed (<see cref="ServerUnavailableException"/>).
        /// </summary>
        Exception NotAnswering(NotAnsweringException e, string what)
        {
            int pid = _pid;
            if (pid <= 0)
            {
                try { pid = _folder.ReadNumber(WorkFolder.PidFile); }
                catch (Exception) { pid = -1; }
            }
            char state = ServerState(pid);
            string got = e.What == NotifySocket.ConnectWhat ? " got no connection" : " got no handshake";
            string waited = what == null
                ? "connecting to " + _folder.Path + got + " within " + e.Seconds.ToString("0.###") + " s"
                : "opening a lane for " + what + got + " within " + TimeoutText(_timeout) + " (ILessPyConnection.CallTimeout)";
            if (state == '\0')
            {
                string gone = "the server of " + _folder.Path + (pid > 0 ? " (pid " + pid + ")" : "") + " has stopped or crashed: "
                    + waited + " (" + e.Message + ")";
                if (_mode == ServerMode.Headless) gone += "; see " + _folder.File(WorkFolder.LogFile);
                return new ServerUnavailableException(gone, e);
            }
            string text = "the server of " + _folder.Path + " (pid " + pid + ") is alive but not answering" + StateText(pid, state) + ": " + waited
                + " (" + e.Message + ")";
            if (state != 'T' && state != 't')
                text += ". It is busy: a running call holds Python's GIL (pure-Python or C code that does not release it), "
                    + (_mode == ServerMode.Notebook ? "or a notebook cell is running, " : "")
                    + "or the machine is overloaded. Wait for it or raise CallTimeout";
            if (what == null) return new ServerUnavailableException(text, e);
            return new CallTimeoutException(text);
        }

        // ---------------------------------------------------------------- in-place request arrays

        /// <summary>
        /// An array inside the current thread's lane request file (from the end of the payload area downward,
        /// 64-aligned), writable until this thread's next call on this connection sends it.
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
            Lane lane = null;
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
                Mapping req = lane.Request;
                long top = lane.InPlaceLow >= 0 ? lane.InPlaceLow : req.PayloadCapacity;
                long offset = (top - size) & ~63L;
                if (offset < MinFrameRoom)
                {
                    long need = lane.InPlaceLow >= 0 ? req.PayloadCapacity + size + 64 : size + 64 + MinFrameRoom;
                    long before = req.PayloadCapacity;
                    req.EnsurePayload(need);
                    offset = (req.PayloadCapacity - size) & ~63L;
                    if (lane.InPlaceLow < 0 || offset < before) lane.InPlaceLow = offset;
                }
                else lane.InPlaceLow = offset;
                req.ReserveRange(Wire.HeaderSize + offset, size);    // the app writes there: its blocks must exist (no SIGBUS on a full disk)
                var memory = new MappedMemoryManager(req.Base + Wire.HeaderSize + offset, (int)size, lane.Requests, req.Keeper).Memory;
                return new NdArray(dtype, (int[])shape.Clone(), memory, lane, lane.Requests.Value, offset);
            }
            finally
            {
                lane.KeepsViews = false;
                Return(lane, true);
            }
        }

        // ---------------------------------------------------------------- closing

        /// <summary>
        /// Closes every lane: an idle one at once, one carrying a call when that call ends (its connection is shut down
        /// now, which wakes the waiting thread and tells the server to interrupt the call). With
        /// <paramref name="shutdown"/> first sends SHUTDOWN on one lane (a server this proxy started without keepAlive).
        /// Never writes into a buffer a running call reads. Idempotent.
        /// </summary>
        public void Dispose(bool shutdown)
        {
            lock (_lock)
            {
                if (_disposed) return;
                _disposed = true;
                if (shutdown)
                {
                    foreach (Lane l in _lanes)
                        if (l.SendShutdown()) break;
                }
                for (int i = _lanes.Count - 1; i >= 0; i--)
                {
                    Lane l = _lanes[i];
                    if (l.State == LaneState.Busy)
                    {
                        l.CloseWhenDone = true;
                        l.Abort();
                        continue;
                    }
                    l.Close();
                    _lanes.RemoveAt(i);
                }
                Monitor.PulseAll(_lock);
            }
        }

        public void Dispose() { Dispose(false); }
    }
}
