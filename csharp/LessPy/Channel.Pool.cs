using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;

namespace LessPy
{
    /// <summary>The pool of lanes: which lane carries which thread's call (the pool rule in the class summary).</summary>
    internal sealed partial class Channel
    {
        /// <summary>A free lane idle this long is checked for a closed connection before use (a server restart).</summary>
        static readonly long IdleCheckTicks = Stopwatch.Frequency / 10;          // 100 ms
        /// <summary>How long a caller waits for a set-aside lane before taking a lane another live thread holds.</summary>
        static readonly long StealGraceTicks = Stopwatch.Frequency;              // 1 s
        /// <summary>After the server refused a lane as over its per-client limit, no lane is opened for this long.</summary>
        static readonly long RefusedTicks = Stopwatch.Frequency / 20;            // 50 ms
        /// <summary>Part of the server's refusal of a lane over its per-client limit (server.py, MAX_LANES_PER_CLIENT).</summary>
        const string LanesPerClientText = "lanes open, the limit per client";

        readonly List<Slot> _lanes = new List<Slot>();
        int _opening;
        int _waiters;
        long _refusedUntil;             // a Stopwatch timestamp: no lane is opened before it (the server refused one)

        /// <summary>Where a lane is in the pool.</summary>
        enum LaneState
        {
            /// <summary>Idle: any thread may take it.</summary>
            Free,
            /// <summary>A call is being written, or waits for its reply.</summary>
            Busy,
            /// <summary>The call is done and its result has views over the lane: kept for the holder thread.</summary>
            Held,
            /// <summary>A call was abandoned (cancelled or timed out): reused once its late reply has arrived.</summary>
            SetAside,
        }

        /// <summary>A lane of this channel as code outside the channel holds it (an open stream's enumerator): opaque.</summary>
        internal abstract class LaneHandle { }

        /// <summary>
        /// One lane in the pool: its transport and where it is in the pool. Guarded by the channel's lock, except what
        /// only the thread holding the lane Busy uses.
        /// </summary>
        sealed class Slot : LaneHandle
        {
            public readonly IFrameTransport Transport;
            /// <summary>The transport when it is a mapped lane (in-place request arrays, NDARRAY_IN_REQUEST), else null.</summary>
            public readonly Lane Mapped;
            public LaneState State;
            public Thread Holder;           // Held (and the thread of a Busy call): whose result views live here
            public Thread LastThread;       // the thread that used it last: preferred when it calls again
            public long LastUsed;           // Stopwatch timestamp of the last reply
            public ulong Abandoned;         // SetAside: the sequence of the abandoned call
            public bool CloseWhenDone;      // Dispose or a server change came while a call was running
            public long InPlaceLow = -1;    // the lowest payload offset of this call's in-place request arrays, -1 none
            public bool KeepsViews;         // Busy for a thread that holds lanes: their views stay valid until this call is sent
            public bool ResultsInRequest;   // Held: a result view lies in the request file, so no call may be written there until it is released
            public string StreamName;       // Busy with an open stream (IEnumerable<T>): the Python function's name, else null
            public bool StreamParked;       // an open stream's item has arrived and its enumerator has not asked for the next one
            public volatile bool StreamAbandoned;   // the open stream's enumerator was garbage-collected undisposed (its finalizer says so)

            public Slot(IFrameTransport transport)
            {
                Transport = transport;
                Mapped = transport as Lane;
            }
        }

        /// <summary>The enumerator of <paramref name="stream"/>'s open stream was garbage-collected undisposed (called by its finalizer: no lock).</summary>
        internal static void AbandonStream(LaneHandle stream) { ((Slot)stream).StreamAbandoned = true; }

        // ---------------------------------------------------------------- taking a lane

        /// <summary>
        /// Takes a lane for a call by thread <paramref name="me"/> (see the pool rule above); the lane is Busy. Without
        /// <paramref name="mayBlock"/> returns null where it would open a lane or wait for one.
        /// </summary>
        Slot Acquire(long deadline, CancellationToken ct, string what, Thread me, bool mayBlock)
        {
            while (true)
            {
                bool again;
                Slot lane = AcquireOnce(deadline, ct, what, me, mayBlock, out again);
                if (!again) return lane;
            }
        }

        /// <summary>
        /// One try of <see cref="Acquire"/>, the policies in order; <paramref name="again"/> when the server refused a new
        /// lane (try again).
        /// </summary>
        Slot AcquireOnce(long deadline, CancellationToken ct, string what, Thread me, bool mayBlock, out bool again)
        {
            again = false;
            long stealAfter = 0;
            bool collected = false;
            bool keepViews;
            lock (_lock)
            {
                while (true)
                {
                    if (_disposed) throw Disposed();
                    bool holds;
                    Slot lane = OwnLaneLocked(me, out holds);
                    if (lane != null)
                    {
                        lane.KeepsViews = true;
                        return Take(lane, me);
                    }
                    lane = FreeLaneLocked(me);
                    if (lane != null)
                    {
                        lane.KeepsViews = holds;
                        return Take(lane, me);
                    }
                    if (MayOpenLocked())
                    {
                        if (!mayBlock) return null;
                        keepViews = holds;
                        break;                                       // open a new lane, outside the lock
                    }
                    bool dead;
                    int inPlace;
                    lane = HeldLaneLocked(me, out dead, out inPlace);
                    if (lane == null)
                    {
                        bool collect;
                        Slot orphan = AbandonedStreamLocked(what, mayBlock && !collected, out collect);
                        if (orphan != null)
                        {
                            Release(orphan);                         // its last item's views die
                            orphan.KeepsViews = holds;
                            return Take(orphan, me);
                        }
                        if (collect)
                        {
                            collected = true;
                            CollectAbandonedStreamsLocked();
                            continue;
                        }
                    }
                    long now = Stopwatch.GetTimestamp();
                    if (lane != null && !dead && WaitsForSetAsideLocked(now, deadline, ref stealAfter)) lane = null;
                    if (lane != null)
                    {
                        Release(lane);                               // its views throw from now on
                        lane.KeepsViews = holds;
                        return Take(lane, me);
                    }
                    if (deadline != long.MaxValue && now >= deadline) throw NoLaneCameFree(what, inPlace);
                    ct.ThrowIfCancellationRequested();
                    if (!mayBlock) return null;
                    _waiters++;
                    try { Monitor.Wait(_lock, 10); }              // also polls set-aside lanes for their late replies
                    finally { _waiters--; }
                }
                _opening++;
            }
            return OpenNewLane(deadline, ct, what, me, keepViews, out again);
        }

        /// <summary>
        /// Policy 1, this thread's own lane: a lane it holds is its to reuse; its views (and those of any other lane it
        /// holds) stay valid while the arguments are encoded (a result view may be an argument) and die before the call is
        /// sent. One whose result view lies in its request file is not reused: the call goes on another lane, and that
        /// view dies once the call is sent, as the views of every lane this thread holds do. In-place request arrays pin
        /// their lane. Also reclaims set-aside lanes whose late reply has come. <paramref name="holds"/>: this thread holds
        /// any lane.
        /// </summary>
        Slot OwnLaneLocked(Thread me, out bool holds)
        {
            Slot mine = null;
            holds = false;
            for (int i = 0; i < _lanes.Count; i++)
            {
                Slot l = _lanes[i];
                if (l.State == LaneState.Held && l.Holder == me)
                {
                    holds = true;
                    if (l.ResultsInRequest) continue;
                    if (mine == null || l.InPlaceLow >= 0) mine = l;
                }
                else if (l.State == LaneState.SetAside && l.Transport.ReplyCameFor(l.Abandoned))
                    l.State = LaneState.Free;
            }
            return mine;
        }

        /// <summary>
        /// Policy 2, a free lane: the one this thread used last, else any. One idle a while is first checked for a closed
        /// connection (the server stopped or restarted) and dropped if closed: a new lane tells which (<see cref="OpenLane"/>).
        /// </summary>
        Slot FreeLaneLocked(Thread me)
        {
            while (true)
            {
                Slot pick = null;
                for (int i = 0; i < _lanes.Count; i++)
                {
                    Slot l = _lanes[i];
                    if (l.State != LaneState.Free) continue;
                    if (l.LastThread == me) { pick = l; break; }
                    if (pick == null) pick = l;
                }
                // a remote lane's LooksOpen reads a flag and a clock (no system call): it is asked every time
                if (pick == null || (pick.Mapped != null && Stopwatch.GetTimestamp() - pick.LastUsed <= IdleCheckTicks) || pick.Transport.LooksOpen()) return pick;
                RemoveLocked(pick);
            }
        }

        /// <summary>Policy 3, a new lane: allowed under the maximum, unless the server refused one a moment ago.</summary>
        bool MayOpenLocked()
        {
            return _lanes.Count + _opening < DefaultMaxLanes && Stopwatch.GetTimestamp() >= _refusedUntil;
        }

        /// <summary>
        /// Policy 4, a held lane taken over: one held by a dead thread (<paramref name="dead"/>), else the least recently
        /// used one a live thread holds, else this thread's own (its views die last). Never a lane whose in-place request
        /// arrays a live thread may be writing through a span right now: a span cannot be checked, and its writes would land
        /// in the new call's request (it comes free with its holder's next call); <paramref name="inPlace"/> counts them.
        /// </summary>
        Slot HeldLaneLocked(Thread me, out bool dead, out int inPlace)
        {
            Slot victim = null, own = null;
            dead = false;
            inPlace = 0;
            for (int i = 0; i < _lanes.Count; i++)
            {
                Slot l = _lanes[i];
                if (l.State != LaneState.Held) continue;
                if (l.Holder == me) { own = l; continue; }
                if (!l.Holder.IsAlive)
                {
                    dead = true;
                    return l;
                }
                if (l.InPlaceLow >= 0) { inPlace++; continue; }
                if (victim == null || l.LastUsed < victim.LastUsed) victim = l;
            }
            return victim ?? own;
        }

        /// <summary>
        /// A live thread's views die only when no set-aside lane is about to come back (its late reply usually follows the
        /// cancel within milliseconds): true while the caller should wait for one first, up to <see cref="StealGraceTicks"/>.
        /// </summary>
        bool WaitsForSetAsideLocked(long now, long deadline, ref long stealAfter)
        {
            bool aside = false;
            for (int i = 0; i < _lanes.Count && !aside; i++) aside = _lanes[i].State == LaneState.SetAside;
            if (!aside) return false;
            if (stealAfter == 0) stealAfter = now + StealGraceTicks;
            return now < stealAfter && now < deadline;
        }

        /// <summary>
        /// Policy 5, when every lane is busy: lanes of open streams whose enumerators wait for nothing (parked) come back
        /// only when the app disposes them, so a garbage-collected one is taken over (the server closes its generator when
        /// the new call arrives). <paramref name="collect"/>: run a collection first (<paramref name="mayCollect"/>), which
        /// finds the enumerators dropped undisposed. A pool held entirely by streams fails now.
        /// </summary>
        /// <exception cref="LanesExhaustedException">Every lane is held by an open stream and no more may be opened.</exception>
        Slot AbandonedStreamLocked(string what, bool mayCollect, out bool collect)
        {
            collect = false;
            Slot orphan = null;
            int parked = 0;
            for (int i = 0; i < _lanes.Count; i++)
            {
                Slot l = _lanes[i];
                if (l.State != LaneState.Busy || !l.StreamParked) continue;
                parked++;
                if (l.StreamAbandoned && orphan == null) orphan = l;
            }
            if (orphan != null || parked == 0) return orphan;
            if (mayCollect)
            {
                collect = true;
                return null;
            }
            if (parked == _lanes.Count && _opening == 0 && _lanes.Count >= DefaultMaxLanes) throw StreamsHoldLanes(what);
            return null;
        }

        /// <summary>Runs a collection outside the lock: the finalizers of enumerators dropped without Dispose mark their lanes.</summary>
        void CollectAbandonedStreamsLocked()
        {
            Monitor.Exit(_lock);
            try
            {
                GC.Collect();
                GC.WaitForPendingFinalizers();
            }
            finally { Monitor.Enter(_lock); }
        }

        /// <summary>Opens a lane for <see cref="AcquireOnce"/> (counted in _opening) and takes it; <paramref name="again"/> when the server refused it.</summary>
        Slot OpenNewLane(long deadline, CancellationToken ct, string what, Thread me, bool keepViews, out bool again)
        {
            again = false;
            Slot fresh;
            try { fresh = new Slot(OpenLane(deadline, ct, "the call to " + what)); }
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
                    fresh.Transport.Close();
                    throw Disposed();
                }
                _lanes.Add(fresh);
                fresh.KeepsViews = keepViews;
                return Take(fresh, me);
            }
        }

        static Slot Take(Slot l, Thread me)
        {
            l.StreamName = null;
            l.StreamParked = false;
            l.StreamAbandoned = false;
            l.State = LaneState.Busy;
            l.Holder = me;
            l.LastThread = me;
            return l;
        }

        // ---------------------------------------------------------------- giving a lane back

        /// <summary>
        /// Just before a call is sent: the views of the lane it uses die (its reply is about to change), and so do those
        /// of every other lane this thread holds (they are free for other threads from now on).
        /// </summary>
        void ReleaseHeldBefore(Slot lane, Thread me)
        {
            lane.Transport.ExpireReplyViews();
            if (!lane.KeepsViews) return;            // this thread held no lane when the call started
            lane.KeepsViews = false;
            lock (_lock)
            {
                bool freed = false;
                for (int i = 0; i < _lanes.Count; i++)
                {
                    Slot l = _lanes[i];
                    if (l != lane && l.State == LaneState.Held && l.Holder == me && l.InPlaceLow < 0)
                    {
                        Release(l);
                        freed = true;
                    }
                }
                if (freed && _waiters > 0) Monitor.PulseAll(_lock);
            }
        }

        /// <summary>Frees a held lane: its result views and in-place request arrays die.</summary>
        static void Release(Slot l)
        {
            l.Transport.ExpireReplyViews();
            if (l.Mapped != null) l.Mapped.InPlace.Generation.Bump();
            l.InPlaceLow = -1;
            l.ResultsInRequest = false;
            l.Holder = null;
            l.State = LaneState.Free;
        }

        /// <summary>Gives a lane back after its call: held for its holder when the result has views.</summary>
        void Return(Slot l, bool hold)
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

        /// <summary>Abandons call <paramref name="seq"/> (the server drops or interrupts it) and sets its lane aside.</summary>
        void SetAside(Slot l, ulong seq)
        {
            l.Transport.Cancel(seq);
            PutAside(l, seq);
        }

        /// <summary>Puts a held lane aside until the answer to request <paramref name="seq"/> has arrived (or drops it when it is to close).</summary>
        void PutAside(Slot l, ulong seq)
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

        void Drop(Slot l)
        {
            lock (_lock) RemoveLocked(l);
        }

        void RemoveLocked(Slot lane)
        {
            lane.Transport.Close();
            _lanes.Remove(lane);
            if (_waiters > 0) Monitor.PulseAll(_lock);
        }

        /// <summary>Closes every lane (the server went away or changed); a Busy lane closes when its call ends.</summary>
        void DropAllLocked()
        {
            for (int i = _lanes.Count - 1; i >= 0; i--)
            {
                Slot l = _lanes[i];
                if (l.State == LaneState.Busy)
                {
                    l.CloseWhenDone = true;
                    continue;
                }
                l.Transport.Close();
                _lanes.RemoveAt(i);
            }
            if (_waiters > 0) Monitor.PulseAll(_lock);
        }

        // ---------------------------------------------------------------- messages about the pool

        /// <summary>No lane came free within the call timeout: what holds them.</summary>
        CallTimeoutException NoLaneCameFree(string what, int inPlace)
        {
            string streams = OpenStreamsText();
            return new CallTimeoutException("no lane of the connection to " + _source.Where + " came free for " + what + " within "
                + TimeoutText(_timeout) + " (ILessPyConnection.CallTimeout): all " + _lanes.Count + " lanes carry calls that are "
                + "running, or abandoned calls still running in Python"
                + (inPlace > 0 ? ", or in-place request arrays (ILessPyConnection.NewRequestArray) of " + inPlace + " live threads "
                    + "that have not sent them yet (a thread's next call sends them and frees its lane)" : "")
                + (streams.Length > 0 ? ", or open streams: " + streams + " whose enumerators were neither run to the end nor disposed "
                    + "(dispose them: a foreach loop does)" : ""));
        }

        /// <summary>The open streams whose enumerators wait for nothing, by function ("frames x3, rows"); "" when none.</summary>
        string OpenStreamsText()
        {
            var counts = new SortedDictionary<string, int>(StringComparer.Ordinal);
            for (int i = 0; i < _lanes.Count; i++)
            {
                Slot l = _lanes[i];
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
            return new LanesExhaustedException("all " + _lanes.Count + " lanes of the connection to " + _source.Where + " (its limit) are held by "
                + "open streams (IEnumerable<T> methods: " + OpenStreamsText() + ") whose enumerators were neither run to the end nor disposed, so "
                + what + " cannot start. Each open enumerator keeps its lane (and its Python generator) until it ends or is disposed: "
                + "dispose enumerators you stop early (a foreach loop does, so do LINQ's First() and Take()), or copy the items with ToList(). "
                + "An enumerator that was dropped without Dispose gives its lane back once the garbage collector has found it", _lanes.Count);
        }
    }
}
