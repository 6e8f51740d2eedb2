using System;
using System.Collections;
using System.Collections.Generic;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// What an interface method declared as <c>IEnumerable&lt;T&gt;</c> returns: a lazy sequence over a Python generator
    /// (or any iterable). Nothing is sent until the first <c>MoveNext</c>; each <c>MoveNext</c> is one round trip that
    /// brings one item; an exception raised inside the generator is thrown by the <c>MoveNext</c> that asked for that
    /// item; disposing the enumerator early closes the generator (its <c>finally</c> blocks run). Each enumeration
    /// calls the Python function again. An enumerator holds one lane until it ends or is disposed, so an NdArray item is
    /// a view valid until the next <c>MoveNext</c>; one dropped undisposed gives its lane back once the garbage collector has
    /// found it. A cancelled token ends the stream at the next <c>MoveNext</c> (or the one waiting) with
    /// <see cref="OperationCanceledException"/>, even when the next item has already arrived.
    /// </summary>
    internal sealed class PythonStream<T> : IEnumerable<T>
    {
        readonly Channel _channel;
        readonly MethodBinding _method;
        readonly object[] _args;
        readonly CancellationToken _ct;

        public PythonStream(Channel channel, MethodBinding method, object[] args, CancellationToken ct)
        {
            _channel = channel;
            _method = method;
            _args = args == null ? new object[0] : (object[])args.Clone();
            _ct = ct;
        }

        public IEnumerator<T> GetEnumerator() { return new Enumerator(this); }

        IEnumerator IEnumerable.GetEnumerator() { return GetEnumerator(); }

        sealed class Enumerator : IEnumerator<T>
        {
            readonly PythonStream<T> _s;
            Channel.LaneHandle _lane;   // the stream's lane while it is open
            bool _done;
            T _current;

            public Enumerator(PythonStream<T> s) { _s = s; }

            public T Current { get { return _current; } }

            object IEnumerator.Current { get { return _current; } }

            public bool MoveNext()
            {
                if (_done) return false;
                ulong seq;
                CancellationToken ct = _s._ct;
                if (ct.IsCancellationRequested) Cancelled();
                try
                {
                    if (_lane == null) _lane = _s._channel.OpenStream(_s._method, _s._args, ct, out seq);
                    else seq = _s._channel.SendStreamRequest(_lane, _s._method, RequestStatus.Next);
                    bool end;
                    object item = _s._channel.StreamStep(_lane, _s._method, seq, ct, out end);
                    if (end)
                    {
                        _lane = null;
                        _done = true;
                        _current = default(T);
                        GC.SuppressFinalize(this);
                        return false;
                    }
                    _current = (T)item;
                }
                catch
                {
                    _lane = null;           // the channel has given the lane back, set it aside or dropped it
                    _done = true;
                    _current = default(T);
                    GC.SuppressFinalize(this);
                    throw;
                }
                // an item that arrived as the token was cancelled is not delivered: the stream ends here
                if (ct.IsCancellationRequested) Cancelled();
                GC.KeepAlive(this);
                return true;
            }

            /// <summary>The token was cancelled: closes the generator (as Dispose does) and throws OperationCanceledException.</summary>
            void Cancelled()
            {
                _current = default(T);
                GC.SuppressFinalize(this);
                Channel.LaneHandle lane = _lane;
                _lane = null;
                _done = true;
                if (lane != null)
                {
                    try { _s._channel.CloseStreamNoWait(lane, _s._method); }
                    catch (LessPyException) { }         // the connection is gone: nothing to close
                    catch (ObjectDisposedException) { }
                }
                throw new OperationCanceledException("the stream of " + _s._method.PyName + " was cancelled (its CancellationToken); "
                    + "its Python generator was closed and no further item is delivered", _s._ct);
            }

            /// <summary>
            /// An enumerator dropped while its stream is open (neither run to the end nor disposed) tells its lane, which the
            /// connection may then take over for another call (the server closes the generator when that call arrives).
            /// </summary>
            ~Enumerator()
            {
                Channel.LaneHandle lane = _lane;
                if (lane != null && !_done) Channel.AbandonStream(lane);
            }

            public void Reset() { throw new NotSupportedException("a Python stream cannot be reset: enumerate the method's result again"); }

            /// <summary>Closes the Python generator when the stream has not ended (its finally blocks run).</summary>
            public void Dispose()
            {
                GC.SuppressFinalize(this);
                if (_done || _lane == null)
                {
                    _done = true;
                    return;
                }
                Channel.LaneHandle lane = _lane;
                _lane = null;
                _done = true;
                try
                {
                    ulong seq = _s._channel.SendStreamRequest(lane, _s._method, RequestStatus.Close);
                    bool end;
                    _s._channel.StreamStep(lane, _s._method, seq, CancellationToken.None, out end);
                }
                catch (LessPyException) { }         // the server or the generator's finally failed: nothing to hand back
                catch (ObjectDisposedException) { }
                catch (OperationCanceledException) { }
            }
        }
    }
}
