using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Reflection;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// Implementation detail: the base class of the proxies <see cref="LessPythonInvoke"/> returns (each interface
    /// call becomes one codec call and one round trip on a lane). Public and unsealed only because DispatchProxy derives
    /// the proxy type from it in a dynamic assembly; use the proxy through your interface and <see cref="ILessPyConnection"/>.
    /// </summary>
    [EditorBrowsable(EditorBrowsableState.Never)]
    public class LessPyProxy : DispatchProxy, ILessPyConnection
    {
        Channel _channel;
        Dictionary<MethodInfo, MethodBinding> _bindings;
        EventHandler _onExit;
        int _disposed;

        /// <summary>Do not use: proxies are made by <see cref="LessPythonInvoke"/> (DispatchProxy needs this public constructor).</summary>
        public LessPyProxy() { }

        /// <summary>Generates the proxy type for <typeparamref name="T"/> (DispatchProxy caches it) while the socket layer warms up.</summary>
        internal static void Prepare<T>() where T : class
        {
            DispatchProxy.Create<T, LessPyProxy>();
        }

        internal static T Create<T>(Channel channel, Dictionary<MethodInfo, MethodBinding> bindings)
            where T : class
        {
            T proxy = DispatchProxy.Create<T, LessPyProxy>();
            var p = (LessPyProxy)(object)proxy;
            p._channel = channel;
            p._bindings = bindings;
            p._onExit = p.OnProcessExit;
            AppDomain.CurrentDomain.ProcessExit += p._onExit;
            return proxy;
        }

        /// <summary>Routes an interface call to Python (DispatchProxy calls it).</summary>
        protected override object Invoke(MethodInfo targetMethod, object[] args)
        {
            MethodBinding b;
            if (!_bindings.TryGetValue(targetMethod, out b)) return InvokeConnection(targetMethod, args);
            if (_disposed != 0) throw new ObjectDisposedException("LessPy connection to " + _channel.Folder);
            CancellationToken ct = b.TokenIndex >= 0 ? (CancellationToken)args[b.TokenIndex] : CancellationToken.None;
            if (b.StartAsync != null) return b.StartAsync(_channel, b, args, ct);
            return _channel.Invoke(b, args, ct);
        }

        /// <summary>
        /// The members of <see cref="IDisposable"/> and <see cref="ILessPyConnection"/>, for an interface that derives
        /// from them: called directly here, never through the interface (which would come back to this proxy).
        /// </summary>
        object InvokeConnection(MethodInfo m, object[] args)
        {
            Type d = m.DeclaringType;
            if (d == typeof(IDisposable) && m.Name == nameof(IDisposable.Dispose))
            {
                Dispose();
                return null;
            }
            if (d == typeof(ILessPyConnection))
            {
                switch (m.Name)
                {
                    case "get_CallTimeout": return CallTimeout;
                    case "set_CallTimeout": CallTimeout = (TimeSpan)args[0]; return null;
                    case "get_ServerPid": return ServerPid;
                    case "get_WorkFolder": return WorkFolder;
                    case "NewRequestArray":
                        return NewRequestArrayOf(m.GetGenericArguments()[0], (int[])args[0]);
                }
            }
            throw new NotSupportedException(m.DeclaringType + "." + m.Name + " is not a method LessPy bound");
        }

        TimeSpan CallTimeout
        {
            get { return _channel.CallTimeout; }
            set { _channel.CallTimeout = value; }
        }

        int ServerPid { get { return _channel.ServerPid; } }

        string WorkFolder { get { return _channel.Folder; } }

        NdArray NewRequestArrayOf(Type t, int[] shape)
        {
            if (shape == null) throw new ArgumentNullException(nameof(shape));
            if (_disposed != 0) throw new ObjectDisposedException("LessPy connection to " + _channel.Folder);
            DType dt = DType.ForClrType(t);
            if (dt == null) throw new ArgumentException(t.Name + " has no NumPy dtype: use float, double, int, long, byte, sbyte, short, ushort, uint, ulong or bool");
            return _channel.NewRequestArray(dt, shape);
        }

        /// <inheritdoc />
        TimeSpan ILessPyConnection.CallTimeout
        {
            get { return CallTimeout; }
            set { CallTimeout = value; }
        }

        /// <inheritdoc />
        int ILessPyConnection.ServerPid { get { return ServerPid; } }

        /// <inheritdoc />
        string ILessPyConnection.WorkFolder { get { return WorkFolder; } }

        /// <inheritdoc />
        NdArray ILessPyConnection.NewRequestArray<T>(params int[] shape) { return NewRequestArrayOf(typeof(T), shape); }

        void OnProcessExit(object sender, EventArgs e) { Dispose(); }

        /// <summary>
        /// Closes the connection: its lanes close (a running call's lane as soon as that call returns, throwing
        /// ObjectDisposedException to its caller). A server this proxy's Initialize started without keepAlive stops as
        /// soon as it is idle (a server other apps share: once the last of them has gone). Idempotent; every call after it
        /// throws ObjectDisposedException.
        /// </summary>
        void IDisposable.Dispose() { Dispose(); }

        internal void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            AppDomain.CurrentDomain.ProcessExit -= _onExit;
            _channel.Dispose();
        }
    }
}
