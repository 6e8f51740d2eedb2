using System;
using System.Buffers;
using System.Collections.Generic;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// A window of a lane's mapping that refuses access once the next call may have overwritten it. A read of it is
    /// trusted only when the generation is unchanged both before (<see cref="GetSpan"/>, <see cref="Pin"/>) and after
    /// (<see cref="CheckAfterRead"/>) the bytes were read: the lane's new user can write there only after the generation
    /// was bumped (Channel.Release, Lane.Close, Channel.Send bump it under the channel's lock, before the call that reuses
    /// the lane is published), so a copy that saw any of its bytes sees the bump after a full fence.
    /// </summary>
    internal sealed unsafe class MappedMemoryManager : MemoryManager<byte>
    {
        readonly byte* _pointer;
        readonly int _length;
        readonly ViewGeneration _generation;
        readonly long _valid;
        readonly object _keeper;           // keeps the mapping's ranges mapped (zero pages once the lane closed) while this lives

        [ThreadStatic] static List<MappedMemoryManager> _watch;    // Channel.Send: the views an encoding call reads
        [ThreadStatic] static List<MappedMemoryManager> _spare;

        public MappedMemoryManager(byte* pointer, int length, ViewGeneration generation, object keeper)
        {
            _pointer = pointer;
            _length = length;
            _generation = generation;
            _valid = generation.Value;
            _keeper = keeper;
        }

        public const string StaleMessage =
            "this NdArray is no longer valid: it was a view over a lane's mapping, valid until the same thread's next call on the proxy "
            + "(or Dispose, or a reconnection to a restarted server, or, for a request array, the call that sent it); "
            + "call .Data or ToArray() before that to keep a copy";

        void Check()
        {
            if (_generation.Value != _valid) throw new InvalidOperationException(StaleMessage);
        }

        /// <summary>After reading the bytes: throws if the view died meanwhile (what was read may be another call's data).</summary>
        public void CheckAfterRead()
        {
            Interlocked.MemoryBarrier();           // the reads of the data happen before the generation is read again
            if (_generation.Value != _valid)
                throw new InvalidOperationException(StaleMessage + " (it died while it was being read: another thread's call took its lane over, "
                    + "or the connection closed or reconnected; what was read is discarded)");
            GC.KeepAlive(_keeper);
        }

        public override Span<byte> GetSpan()
        {
            Check();
            List<MappedMemoryManager> w = _watch;
            if (w != null) w.Add(this);
            return new Span<byte>(_pointer, _length);
        }

        public override MemoryHandle Pin(int elementIndex = 0)
        {
            Check();
            if ((uint)elementIndex > (uint)_length) throw new ArgumentOutOfRangeException(nameof(elementIndex));
            List<MappedMemoryManager> w = _watch;
            if (w != null) w.Add(this);
            return new MemoryHandle(_pointer + elementIndex);
        }

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }

        /// <summary>From now on this thread's reads of views are recorded, until <see cref="EndWatch"/> (Channel.Send around the encoding).</summary>
        public static void BeginWatch()
        {
            List<MappedMemoryManager> w = _spare ?? new List<MappedMemoryManager>();
            _spare = null;
            w.Clear();
            _watch = w;
        }

        /// <summary>
        /// Stops recording; with <paramref name="check"/>, throws if a view read since <see cref="BeginWatch"/> died meanwhile
        /// (an argument copied into the request may hold another call's bytes: the call must not be sent).
        /// </summary>
        public static void EndWatch(bool check)
        {
            List<MappedMemoryManager> w = _watch;
            _watch = null;
            if (w == null) return;
            try
            {
                if (check && w.Count > 0)
                {
                    Interlocked.MemoryBarrier();
                    for (int i = 0; i < w.Count; i++)
                        if (w[i]._generation.Value != w[i]._valid)
                            throw new InvalidOperationException("an NdArray argument died while it was copied into the call (it was a view over a "
                                + "lane's mapping, and that lane was taken over by another thread's call or closed meanwhile): the call was not sent. "
                                + "Pass a copy (ToArray(), .Data) of a result that another thread may invalidate");
                }
            }
            finally
            {
                w.Clear();
                _spare = w;
            }
        }
    }
}
