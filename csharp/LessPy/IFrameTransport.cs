using System;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// How one lane's frames travel: one request frame out, one reply frame back, one call at a time. What a frame holds
    /// is the codec's business (PROTOCOL.md sections 4 to 7) and which lane carries which call is the channel's (its
    /// pool); the transport only moves the bytes, so neither of them knows how.
    /// <para>
    /// A call: <see cref="ReserveRequest"/> gives the buffer the codec writes the request payload into;
    /// <see cref="Send"/> hands it over with its status and flags and returns the call's sequence; <see cref="Wait"/>
    /// blocks until the reply to that sequence is there, the call's deadline passes, its token is cancelled, or the
    /// connection closes; <see cref="ReadReply"/> gives the reply's status and payload, which the codec decodes. A
    /// call given up is cancelled (<see cref="Cancel"/>): its late reply still comes (<see cref="ReplyCameFor"/>)
    /// before the transport may carry another.
    /// </para>
    /// <para>
    /// The mapped transport (<see cref="Lane"/>) writes into the lane's request file, publishes by the header's
    /// sequence, waits by spinning, then yielding, then on a one-byte notify socket, and reads the reply where it lies in
    /// the response file: result views (<see cref="NdArray"/>) are windows of that file, valid until
    /// <see cref="ExpireReplyViews"/>. It also has what only shared memory allows, used by the channel through
    /// <see cref="Lane"/> itself: in-place request arrays (NDARRAY_AT) and results that are views of the request
    /// (NDARRAY_IN_REQUEST, asked for by <see cref="Wire.FlagReplyInRequest"/>).
    /// </para>
    /// <para>
    /// A websocket transport would keep one byte buffer per lane: <see cref="ReserveRequest"/> returns it, grown as
    /// asked; <see cref="Send"/> sends one binary message carrying a small header (sequence, status, flags, length) and
    /// the payload; <see cref="Wait"/> receives until the message with that sequence arrives (dropping late replies of
    /// cancelled calls), the deadline passes or the token is cancelled; <see cref="ReadReply"/> returns the received
    /// payload; <see cref="ReplyView"/> wraps the received buffer (views expire when <see cref="ExpireReplyViews"/> lets
    /// the buffer be reused, or never when each reply gets a fresh buffer); <see cref="Cancel"/> and
    /// <see cref="SendShutdown"/> send a message of their own; <see cref="Close"/> closes the socket. It sends no NDARRAY_AT and never sets
    /// <see cref="Wire.FlagReplyInRequest"/>, so the server sends it no NDARRAY_IN_REQUEST.
    /// </para>
    /// <para>
    /// Only the thread that holds the lane for a call uses it, except what the channel does under its lock to manage the
    /// pool: <see cref="ReplyCameFor"/>, <see cref="LooksOpen"/>, <see cref="ExpireReplyViews"/> (a lane taken over),
    /// <see cref="SendShutdown"/>, <see cref="Abort"/> and <see cref="Close"/>.
    /// </para>
    /// </summary>
    internal interface IFrameTransport
    {
        /// <summary>
        /// The request payload buffer, holding at least <paramref name="payloadBytes"/> (grown when needed): the codec
        /// writes the frame at its start.
        /// </summary>
        /// <exception cref="PayloadTooLargeException">The transport cannot carry that much (its limit, or a full disk).</exception>
        Span<byte> ReserveRequest(long payloadBytes);

        /// <summary>
        /// Sends the frame of <paramref name="payloadLength"/> bytes written at the start of the request buffer, with
        /// its request <paramref name="status"/> and <paramref name="flags"/>. Returns the call's sequence; false in
        /// <paramref name="sent"/> when the connection is gone.
        /// </summary>
        ulong Send(int payloadLength, RequestStatus status, uint flags, out bool sent);

        /// <summary>
        /// Waits for the reply to <paramref name="seq"/> until <paramref name="deadline"/> (a Stopwatch timestamp;
        /// long.MaxValue waits forever) and while <paramref name="ct"/> is not cancelled.
        /// </summary>
        /// <exception cref="ProtocolException">A reply to a later sequence than any sent.</exception>
        WaitOutcome Wait(ulong seq, long deadline, CancellationToken ct);

        /// <summary>The arrived reply: its header status (<see cref="FrameStatus"/>) and, in <paramref name="payload"/>, its payload.</summary>
        /// <exception cref="ProtocolException">The reply's length is more than the transport holds.</exception>
        uint ReadReply(out ReadOnlySpan<byte> payload);

        /// <summary>
        /// The reply payload's first <paramref name="length"/> bytes as memory that results may keep without a copy
        /// (NdArray views), valid until <see cref="ExpireReplyViews"/>.
        /// </summary>
        ReadOnlyMemory<byte> ReplyView(int length);

        /// <summary>Every view of a reply of this lane throws from now on: the lane is about to carry another call, or to close.</summary>
        void ExpireReplyViews();

        /// <summary>The size of the reply buffer (for a message saying a reply did not fit).</summary>
        long ReplyCapacity { get; }

        /// <summary>True once the reply to call <paramref name="seq"/> (given up) or to a later one has arrived.</summary>
        bool ReplyCameFor(ulong seq);

        /// <summary>
        /// Gives up call <paramref name="seq"/>: the server drops it if not started and interrupts it if running. Its
        /// reply still comes (see <see cref="ReplyCameFor"/>).
        /// </summary>
        void Cancel(ulong seq);

        /// <summary>False when the server has closed the connection. Cheap enough for a lane idle a while, not for every call.</summary>
        bool LooksOpen();

        /// <summary>Sends SHUTDOWN (PROTOCOL.md section 3): the server stops once it is idle after this client has gone. False when the connection is gone.</summary>
        bool SendShutdown();

        /// <summary>Shuts the connection down without giving back its buffers: wakes a thread blocked in <see cref="Wait"/>.</summary>
        void Abort();

        /// <summary>Closes the connection and gives its buffers back; every view of this lane throws from now on. Idempotent.</summary>
        void Close();

        /// <summary>True once <see cref="Close"/> ran.</summary>
        bool IsClosed { get; }
    }
}
