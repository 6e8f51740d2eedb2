using System;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// The in-place request arrays of one mapped lane's request file (<see cref="ILessPyConnection.NewRequestArray{T}"/>):
    /// arrays the app fills where the call frame will be, which the frame then names by offset (NDARRAY_AT, PROTOCOL.md
    /// section 4) instead of copying them. A capability of the mapped transport (<see cref="Lane"/>) only.
    /// </summary>
    internal sealed class RequestArrays
    {
        Thread _encoder;
        long _sentEnd;

        /// <summary>The arrays are writable while this has the value they were made with; bumped once a call sends them.</summary>
        public readonly ViewGeneration Generation = new ViewGeneration();

        /// <summary>A call frame is being written into the request file by the current thread (its arrays may be sent).</summary>
        public void BeginEncoding()
        {
            _encoder = Thread.CurrentThread;
            _sentEnd = 0;
        }

        /// <summary>The frame is written; returns the end of the highest in-place array it sends (0: none), which the payload must cover.</summary>
        public long EndEncoding()
        {
            _encoder = null;
            return _sentEnd;
        }

        /// <summary>
        /// The codec writes an NDARRAY_AT for an array made at <paramref name="generation"/> whose data ends at payload
        /// offset <paramref name="end"/>: allowed only in the next call of the thread that made it, on this lane.
        /// </summary>
        /// <exception cref="ArgumentException">The array belongs to another thread or connection, or was already sent.</exception>
        public void Claim(long generation, long end)
        {
            if (_encoder != Thread.CurrentThread || Generation.Value != generation)
                throw new ArgumentException("an in-place request array can be sent only by the next call of the thread that made it, on the same "
                    + "connection; this one was made for another thread or connection, or an earlier call already sent it: make a new one with "
                    + "ILessPyConnection.NewRequestArray");
            _sentEnd = Math.Max(_sentEnd, end);
        }
    }
}
