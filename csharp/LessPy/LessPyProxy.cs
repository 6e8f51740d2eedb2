using System;
using System.Collections.Generic;
using System.ComponentModel;
using System.Diagnostics;
using System.Reflection;
using System.Text;

namespace LessPy
{
    /// <summary>What one interface method sends: its Python name, return descriptor and argument types, computed once.</summary>
    internal sealed class MethodBinding
    {
        public string PyName;
        public byte[] NameUtf8;
        public byte[] Descriptor;
        public WireType[] ArgTypes;
        public WireType ReturnType;
        public bool ReturnsArrays;      // an NdArray somewhere in the result: decode over a view that can expire
    }

    /// <summary>
    /// Implementation detail: the base class of the proxies <see cref="LessPythonInvoke"/> returns (each interface
    /// call becomes one codec call and one round trip). Public and unsealed only because DispatchProxy derives the
    /// proxy type from it in a dynamic assembly; use the proxy through your interface and <see cref="ILessPyConnection"/>.
    /// </summary>
    [EditorBrowsable(EditorBrowsableState.Never)]
    public class LessPyProxy : DispatchProxy, ILessPyConnection
    {
        Channel _channel;
        Dictionary<MethodInfo, MethodBinding> _bindings;
        bool _shutdownOnDispose;
        EventHandler _onExit;
        Process _server;              // the server we started, kept so its output keeps being drained
        int _disposed;

        /// <summary>Do not use: proxies are made by <see cref="LessPythonInvoke"/> (DispatchProxy needs this public constructor).</summary>
        public LessPyProxy() { }

        internal static T Create<T>(Channel channel, Dictionary<MethodInfo, MethodBinding> bindings, bool shutdownOnDispose, Process server)
            where T : class
        {
            T proxy = DispatchProxy.Create<T, LessPyProxy>();
            var p = (LessPyProxy)(object)proxy;
            p._channel = channel;
            p._bindings = bindings;
            p._shutdownOnDispose = shutdownOnDispose;
            p._server = server;
            p._onExit = p.OnProcessExit;
            AppDomain.CurrentDomain.ProcessExit += p._onExit;
            return proxy;
        }

        /// <summary>Checks every method of <paramref name="iface"/> and computes what its calls send.</summary>
        internal static Dictionary<MethodInfo, MethodBinding> Bind(Type iface)
        {
            if (!iface.IsInterface) throw new ArgumentException(iface + " is not an interface: LessPy implements interfaces", "T");
            var result = new Dictionary<MethodInfo, MethodBinding>();
            var all = new List<Type> { iface };
            all.AddRange(iface.GetInterfaces());
            foreach (Type t in all)
            {
                if (t == typeof(IDisposable) || t == typeof(ILessPyConnection)) continue;
                foreach (MethodInfo m in t.GetMethods())
                    result[m] = BindMethod(t, m);
            }
            return result;
        }

        static MethodBinding BindMethod(Type t, MethodInfo m)
        {
            string where = t.Name + "." + m.Name;
            var attr = (PythonImportAttribute)Attribute.GetCustomAttribute(m, typeof(PythonImportAttribute));
            if (attr == null)
                throw new NotSupportedException(where + " has no [PythonImport] attribute: every method of a LessPy interface calls a Python function");
            if (m.IsGenericMethodDefinition) throw new NotSupportedException(where + " is generic: LessPy methods cannot be");
            var b = new MethodBinding();
            b.PyName = attr.Name ?? m.Name;
            b.NameUtf8 = Encoding.UTF8.GetBytes(b.PyName);
            if (b.NameUtf8.Length > Codec.MaxNameBytes)
                throw new NotSupportedException(where + ": the Python name is longer than " + Codec.MaxNameBytes + " bytes of UTF-8");
            Type bad;
            b.ReturnType = WireType.For(m.ReturnType, true, out bad);
            if (b.ReturnType == null)
                throw new NotSupportedException(where + " returns " + Describe(m.ReturnType, bad) + ", which LessPy cannot carry. " + Supported);
            ParameterInfo[] ps = m.GetParameters();
            if (ps.Length > 255) throw new NotSupportedException(where + " has more than 255 parameters");
            b.ArgTypes = new WireType[ps.Length];
            for (int i = 0; i < ps.Length; i++)
            {
                if (ps[i].ParameterType.IsByRef)
                    throw new NotSupportedException(where + ": parameter " + ps[i].Name + " is ref/out/in, which LessPy cannot carry");
                b.ArgTypes[i] = WireType.For(ps[i].ParameterType, false, out bad);
                if (b.ArgTypes[i] == null)
                    throw new NotSupportedException(where + ": parameter " + ps[i].Name + " is " + Describe(ps[i].ParameterType, bad)
                        + ", which LessPy cannot carry. " + Supported);
            }
            b.ReturnsArrays = ContainsArrays(b.ReturnType);
            var d = new List<byte>();
            b.ReturnType.WriteDescriptor(d);
            b.Descriptor = d.ToArray();
            return b;
        }

        const string Supported = "Supported: bool, int, long, float, double, sbyte, byte, short, ushort, uint, ulong, string, DateTime, TimeSpan, Guid, enums, "
            + "nullable value types (int?, DateTime?), byte[], int[], int[][], 1-D arrays of numbers or bool (double[], bool[], ...), rectangular arrays (double[,]), NdArray, "
            + "T[], List<T>, IList<T>, IReadOnlyList<T>, Dictionary<string, T>, IReadOnlyDictionary<string, T>, classes and structs with public properties (records), "
            + "ValueTuple of 1 to 7 of these (nested), and void returns (docs/PROTOCOL.md section 4).";

        static bool ContainsArrays(WireType t)
        {
            if (t.Tag == Tag.NdArray) return true;
            if (t.Tag != Tag.Tuple) return false;
            foreach (var item in t.Items)
                if (ContainsArrays(item)) return true;
            return false;
        }

        /// <summary>The type as C# writes it (int?, not System.Nullable`1[...]), the part LessPy refuses, and what to use instead.</summary>
        static string Describe(Type t, Type bad)
        {
            string hint = WireType.Hint(bad ?? t);
            if (bad != null && bad != t) return WireType.CSharpName(t) + " (its part " + WireType.CSharpName(bad) + (hint.Length > 0 ? ": " + hint : "") + ")";
            return WireType.CSharpName(t) + (hint.Length > 0 ? " (" + hint + ")" : "");
        }

        /// <summary>Routes an interface call to Python (DispatchProxy calls it).</summary>
        protected override object Invoke(MethodInfo targetMethod, object[] args)
        {
            Type d = targetMethod.DeclaringType;
            if (d == typeof(IDisposable) || d == typeof(ILessPyConnection))
            {
                try { return targetMethod.Invoke(this, args); }
                catch (TargetInvocationException e) { throw e.InnerException; }
            }
            MethodBinding b;
            if (!_bindings.TryGetValue(targetMethod, out b))
                throw new NotSupportedException(targetMethod.Name + " is not a method LessPy bound");
            if (_disposed != 0) throw new ObjectDisposedException("LessPy connection to " + _channel.Folder);
            return _channel.Invoke(b, args ?? new object[0]);
        }

        /// <inheritdoc />
        TimeSpan ILessPyConnection.CallTimeout
        {
            get { return _channel.CallTimeout; }
            set { _channel.CallTimeout = value; }
        }

        /// <inheritdoc />
        int ILessPyConnection.ServerPid { get { return _channel.ServerPid; } }

        /// <inheritdoc />
        string ILessPyConnection.WorkFolder { get { return _channel.Folder; } }

        void OnProcessExit(object sender, EventArgs e) { Dispose(); }

        /// <summary>Closes the connection (asking a server started without keepAlive to stop). Idempotent.</summary>
        void IDisposable.Dispose() { Dispose(); }

        internal void Dispose()
        {
            if (System.Threading.Interlocked.Exchange(ref _disposed, 1) != 0) return;
            AppDomain.CurrentDomain.ProcessExit -= _onExit;
            _channel.Dispose(_shutdownOnDispose);
            if (_server != null && _shutdownOnDispose)
            {
                // give the server a moment to exit cleanly so its files are gone when Dispose returns
                try
                {
                    // and make sure it is gone: a function that never returns must not leave an orphan behind
                    if (!_server.WaitForExit(2000)) _server.Kill();
                }
                catch (InvalidOperationException) { }
                catch (SystemException) { }
            }
        }
    }
}
