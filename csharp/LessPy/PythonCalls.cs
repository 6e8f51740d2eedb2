using System;
using System.Collections.Generic;
using System.Reflection;
using System.Threading;
using System.Threading.Tasks;

namespace LessPy
{
    /// <summary>
    /// The low-level call API that generated clients (<c>lesspy stub MODULE.py --client</c>) are written against: a
    /// Python function called by name with typed arguments and a typed result, synchronously, as a
    /// <see cref="Task{TResult}"/> or as a stream, with a <see cref="CancellationToken"/>. Nothing on its path generates
    /// code at run time (no Reflection.Emit, DispatchProxy, MakeGenericType/MakeGenericMethod over the result type, or
    /// Expression.Compile): the result type is the generic argument the caller names, which an ahead-of-time compiler
    /// (IL2CPP, NativeAOT, Mono full-AOT) instantiates statically. One instance is one connection: everything
    /// <see cref="ILessPyConnection"/> says holds (threads, lanes, NdArray views, CallTimeout). Made by
    /// <see cref="LessPythonInvoke.Initialize{T}"/> and <see cref="LessPythonInvoke.Connect{T}(string)"/> for an interface
    /// carrying <see cref="LessPyClientAttribute"/>, and given to the generated class's constructor.
    /// </summary>
    public sealed class PythonCalls : ILessPyConnection
    {
        readonly Channel _channel;
        readonly Dictionary<MethodInfo, MethodBinding> _bindings;
        readonly EventHandler _onExit;
        int _disposed;

        internal PythonCalls(Channel channel, Dictionary<MethodInfo, MethodBinding> bindings)
        {
            _channel = channel;
            _bindings = bindings;
            _onExit = OnProcessExit;
            AppDomain.CurrentDomain.ProcessExit += _onExit;
        }

        /// <summary>
        /// The Python function that the method <paramref name="methodName"/> of <paramref name="iface"/> (or of an
        /// interface it derives from) binds, through its <see cref="PythonImportAttribute"/>. Call it once per method, in
        /// the generated class's constructor.
        /// </summary>
        /// <exception cref="ArgumentException">The interface bound for this connection has no such method, or more than one.</exception>
        public PythonFunction Function(Type iface, string methodName)
        {
            if (iface == null) throw new ArgumentNullException(nameof(iface));
            if (methodName == null) throw new ArgumentNullException(nameof(methodName));
            MethodBinding found = null;
            foreach (KeyValuePair<MethodInfo, MethodBinding> kv in _bindings)
            {
                if (kv.Key.Name != methodName || !kv.Key.DeclaringType.IsAssignableFrom(iface)) continue;
                if (found != null) throw new ArgumentException(iface.Name + "." + methodName + " is overloaded: LessPy binds methods by name", nameof(methodName));
                found = kv.Value;
            }
            if (found == null) throw new ArgumentException(iface.Name + " has no [PythonImport] method " + methodName + " bound for this connection", nameof(methodName));
            return new PythonFunction(found);
        }

        /// <summary>Calls <paramref name="function"/> and waits for its result.</summary>
        /// <typeparam name="TResult">The result type the interface method declares.</typeparam>
        /// <param name="function">From <see cref="Function"/>.</param>
        /// <param name="cancellationToken">Abandons the call (<see cref="CancellationToken.None"/>: never).</param>
        /// <param name="args">The Python arguments, in order.</param>
        /// <exception cref="OperationCanceledException">The token was cancelled.</exception>
        /// <exception cref="LessPyException">The call failed (the subclasses say how; <see cref="PythonException"/>: Python raised).</exception>
        public TResult Call<TResult>(PythonFunction function, CancellationToken cancellationToken, params object[] args)
        {
            return (TResult)_channel.Invoke(Check(function, args), args, cancellationToken);
        }

        /// <summary>Calls <paramref name="function"/>, whose result is discarded (a <c>void</c> method), and waits for it to return.</summary>
        /// <param name="function">From <see cref="Function"/>.</param>
        /// <param name="cancellationToken">Abandons the call (<see cref="CancellationToken.None"/>: never).</param>
        /// <param name="args">The Python arguments, in order.</param>
        public void Call(PythonFunction function, CancellationToken cancellationToken, params object[] args)
        {
            _channel.Invoke(Check(function, args), args, cancellationToken);
        }

        /// <summary>Starts a call of <paramref name="function"/> without blocking the caller (as an interface method returning <c>Task&lt;T&gt;</c>).</summary>
        /// <typeparam name="TResult">The task's result type.</typeparam>
        /// <param name="function">From <see cref="Function"/>.</param>
        /// <param name="cancellationToken">Cancels the task, and the Python call (docs/PROTOCOL.md).</param>
        /// <param name="args">The Python arguments, in order.</param>
        public Task<TResult> CallAsync<TResult>(PythonFunction function, CancellationToken cancellationToken, params object[] args)
        {
            return _channel.InvokeAsync<TResult>(Check(function, args), args, cancellationToken);
        }

        /// <summary>Starts a call of <paramref name="function"/> whose result is discarded (an interface method returning <c>Task</c>).</summary>
        /// <param name="function">From <see cref="Function"/>.</param>
        /// <param name="cancellationToken">Cancels the task, and the Python call.</param>
        /// <param name="args">The Python arguments, in order.</param>
        public Task CallAsync(PythonFunction function, CancellationToken cancellationToken, params object[] args)
        {
            return _channel.InvokeAsync<object>(Check(function, args), args, cancellationToken);
        }

        /// <summary>
        /// The items a Python generator yields (an interface method returning <c>IEnumerable&lt;T&gt;</c>): each
        /// enumeration calls the function again, each <c>MoveNext</c> fetches one item; disposing the enumerator closes
        /// the generator.
        /// </summary>
        /// <typeparam name="TItem">The item type.</typeparam>
        /// <param name="function">From <see cref="Function"/>.</param>
        /// <param name="cancellationToken">Ends the stream at the next <c>MoveNext</c> with <see cref="OperationCanceledException"/>.</param>
        /// <param name="args">The Python arguments, in order.</param>
        public IEnumerable<TItem> Stream<TItem>(PythonFunction function, CancellationToken cancellationToken, params object[] args)
        {
            return new PythonStream<TItem>(_channel, Check(function, args), args, cancellationToken);
        }

        MethodBinding Check(PythonFunction function, object[] args)
        {
            if (function == null) throw new ArgumentNullException(nameof(function));
            if (_disposed != 0) throw new ObjectDisposedException("LessPy connection to " + _channel.Folder);
            MethodBinding b = function.Binding;
            int n = args == null ? 0 : args.Length;
            if (n != b.ArgTypes.Length)
                throw new ArgumentException(b.PyName + " takes " + b.ArgTypes.Length + " argument" + (b.ArgTypes.Length == 1 ? "" : "s") + ", not " + n, nameof(args));
            return b;
        }

        /// <inheritdoc />
        public TimeSpan CallTimeout
        {
            get { return _channel.CallTimeout; }
            set { _channel.CallTimeout = value; }
        }

        /// <inheritdoc />
        public int ServerPid { get { return _channel.ServerPid; } }

        /// <inheritdoc />
        public string WorkFolder { get { return _channel.Folder; } }

        /// <inheritdoc />
        public NdArray NewRequestArray<T>(params int[] shape) where T : struct
        {
            if (shape == null) throw new ArgumentNullException(nameof(shape));
            if (_disposed != 0) throw new ObjectDisposedException("LessPy connection to " + _channel.Folder);
            DType dt = DType.ForClrType(typeof(T));
            if (dt == null) throw new ArgumentException(typeof(T).Name + " has no NumPy dtype: use float, double, int, long, byte, sbyte, short, ushort, uint, ulong or bool");
            return _channel.NewRequestArray(dt, shape);
        }

        void OnProcessExit(object sender, EventArgs e) { Dispose(); }

        /// <summary>
        /// Closes the connection, as disposing a proxy does (<see cref="ILessPyConnection"/>). Idempotent; every call
        /// after it throws <see cref="ObjectDisposedException"/>.
        /// </summary>
        public void Dispose()
        {
            if (Interlocked.Exchange(ref _disposed, 1) != 0) return;
            AppDomain.CurrentDomain.ProcessExit -= _onExit;
            _channel.Dispose();
        }
    }
}
