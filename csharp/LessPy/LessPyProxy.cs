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

        /// <summary>
        /// Generates the proxy type for <typeparamref name="T"/> (DispatchProxy caches it) while the socket layer warms up;
        /// nothing for an interface with a generated client. Never fails: <see cref="Create{T}"/> reports what failed.
        /// </summary>
        internal static void Prepare<T>() where T : class
        {
            if (Attribute.IsDefined(typeof(T), typeof(LessPyClientAttribute), false)) return;
            try { DispatchProxy.Create<T, LessPyProxy>(); }
            catch (Exception) { }
        }

        /// <summary>
        /// DispatchProxy.Create, or, on a runtime that cannot compile code at run time (IL2CPP, iOS, NativeAOT, Mono
        /// full-AOT), a <see cref="LessPyException"/> that says how to generate a client instead.
        /// </summary>
        static T NewProxy<T>() where T : class
        {
            try
            {
                return DispatchProxy.Create<T, LessPyProxy>();
            }
            catch (Exception e)
            {
                Exception cause = e is TargetInvocationException && e.InnerException != null ? e.InnerException : e;
                if (!(cause.GetType().FullName == "System.ExecutionEngineException" || cause is PlatformNotSupportedException || cause is NotSupportedException))
                    throw;
                string name = typeof(T).Name;
                throw new LessPyException("LessPy cannot implement " + name + " on this runtime: it compiles no code at run time "
                    + "(Unity IL2CPP, iOS, .NET NativeAOT and Mono full-AOT do not), so the DispatchProxy LessPy uses elsewhere fails ("
                    + cause.GetType().Name + ": " + cause.Message.Split('\n')[0].Trim() + "). Generate a client class: run `lesspy stub MODULE.py --client -o "
                    + (name.Length > 1 && name[0] == 'I' && char.IsUpper(name[1]) ? name.Substring(1) : name) + ".cs` (or `%lesspy stub --client` "
                    + "in the notebook) and compile the file it writes in place of your interface: its [LessPyClient] attribute makes "
                    + "Initialize and Connect construct that class.", e);
            }
        }

        internal static T Create<T>(Channel channel, Dictionary<MethodInfo, MethodBinding> bindings)
            where T : class
        {
            T proxy = NewProxy<T>();
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
