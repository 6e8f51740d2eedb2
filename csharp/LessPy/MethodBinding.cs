using System;
using System.Collections.Generic;
using System.Reflection;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace LessPy
{
    /// <summary>
    /// What one interface method sends: its Python name, return descriptor and argument types, whether it is
    /// asynchronous and takes a CancellationToken. Computed once per method, so a call does no reflection of its own.
    /// </summary>
    internal sealed class MethodBinding
    {
        public string PyName;
        public byte[] NameUtf8;
        public byte[] Descriptor;
        /// <summary>The Python arguments (a trailing CancellationToken is not one of them).</summary>
        public WireType[] ArgTypes;
        /// <summary>The C# names of the Python arguments (for messages).</summary>
        public string[] ArgNames;
        public WireType ReturnType;
        /// <summary>An NdArray somewhere in the result: decoded over a view that can expire, and the lane is held.</summary>
        public bool ReturnsArrays;
        /// <summary>The last parameter is a CancellationToken (at this index), or -1.</summary>
        public int TokenIndex = -1;
        /// <summary>For Task / Task&lt;T&gt; methods: starts the call and returns the task; null for synchronous methods.</summary>
        public Func<Channel, MethodBinding, object[], CancellationToken, object> StartAsync;

        static readonly string Supported = "Supported: bool, int, long, float, double, sbyte, byte, short, ushort, uint, ulong, string, DateTime, TimeSpan, Guid, enums, "
            + "nullable value types (int?, DateTime?), byte[], int[], int[][], 1-D arrays of numbers or bool (double[], bool[], ...), rectangular arrays (double[,]), NdArray, "
            + "T[], List<T>, IList<T>, IReadOnlyList<T>, Dictionary<string, T>, IReadOnlyDictionary<string, T>, classes and structs with public properties (records), "
            + "ValueTuple of 1 to " + Codec.MaxTuple + " of these (nested), void returns, Task and Task<T> returns (asynchronous), IEnumerable<T> returns (streamed from a generator), and a CancellationToken as the last parameter "
            + "(docs/PROTOCOL.md section 4).";

        /// <summary>Checks every method of <paramref name="iface"/> and computes what its calls send.</summary>
        public static Dictionary<MethodInfo, MethodBinding> BindAll(Type iface)
        {
            if (!iface.IsInterface) throw new ArgumentException(iface + " is not an interface: LessPy implements interfaces", "T");
            var result = new Dictionary<MethodInfo, MethodBinding>();
            // a generated client calls PythonCalls with its result types as generic arguments: no MakeGenericMethod here
            bool starters = !Attribute.IsDefined(iface, typeof(LessPyClientAttribute), false);
            var all = new List<Type> { iface };
            all.AddRange(iface.GetInterfaces());
            foreach (Type t in all)
            {
                if (t == typeof(IDisposable) || t == typeof(ILessPyConnection)) continue;
                foreach (MethodInfo m in t.GetMethods())
                    result[m] = Bind(t, m, starters);
            }
            return result;
        }

        static MethodBinding Bind(Type t, MethodInfo m, bool starters)
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

            Type declared = m.ReturnType;
            Type result = declared;
            if (declared == typeof(Task))
            {
                result = typeof(void);
                if (starters) b.StartAsync = MakeStarter(typeof(object));
            }
            else if (declared.IsGenericType && declared.GetGenericTypeDefinition() == typeof(Task<>))
            {
                result = declared.GetGenericArguments()[0];
                if (starters) b.StartAsync = MakeStarter(result);
            }
            else if (declared.IsGenericType && declared.GetGenericTypeDefinition() == typeof(IEnumerable<>))
            {
                result = declared.GetGenericArguments()[0];          // a stream: one item per MoveNext
                if (starters) b.StartAsync = MakeStarter(result, "StartStream");
            }
            Type bad;
            b.ReturnType = WireType.For(result, true, out bad);
            if (b.ReturnType == null)
                throw new NotSupportedException(where + " returns " + Describe(declared, bad) + ", which LessPy cannot carry. " + Supported);

            ParameterInfo[] ps = m.GetParameters();
            int n = ps.Length;
            if (n > 0 && ps[n - 1].ParameterType == typeof(CancellationToken))
            {
                b.TokenIndex = n - 1;
                n--;
            }
            if (n > 255) throw new NotSupportedException(where + " has more than 255 parameters");
            b.ArgTypes = new WireType[n];
            b.ArgNames = new string[n];
            for (int i = 0; i < n; i++)
            {
                if (ps[i].ParameterType.IsByRef)
                    throw new NotSupportedException(where + ": parameter " + ps[i].Name + " is ref/out/in, which LessPy cannot carry");
                if (ps[i].ParameterType == typeof(CancellationToken))
                    throw new NotSupportedException(where + ": a CancellationToken must be the last parameter");
                b.ArgNames[i] = ps[i].Name;
                b.ArgTypes[i] = WireType.For(ps[i].ParameterType, false, out bad);
                if (b.ArgTypes[i] == null)
                    throw new NotSupportedException(where + ": parameter " + ps[i].Name + " is " + Describe(ps[i].ParameterType, bad)
                        + ", which LessPy cannot carry. " + Supported);
            }
            b.ReturnsArrays = ContainsArrays(b.ReturnType) || MayHoldArrays(result, 0);
            var d = new List<byte>();
            b.ReturnType.WriteDescriptor(d);
            b.Descriptor = d.ToArray();
            return b;
        }

        static Func<Channel, MethodBinding, object[], CancellationToken, object> MakeStarter(Type result, string how = "Start")
        {
            MethodInfo start = typeof(MethodBinding).GetMethod(how, BindingFlags.NonPublic | BindingFlags.Static).MakeGenericMethod(result);
            return (Func<Channel, MethodBinding, object[], CancellationToken, object>)Delegate.CreateDelegate(
                typeof(Func<Channel, MethodBinding, object[], CancellationToken, object>), start);
        }

        static object Start<T>(Channel channel, MethodBinding b, object[] args, CancellationToken ct)
        {
            return channel.InvokeAsync<T>(b, args, ct);
        }

        static object StartStream<T>(Channel channel, MethodBinding b, object[] args, CancellationToken ct)
        {
            return new PythonStream<T>(channel, b, args, ct);
        }

        static bool ContainsArrays(WireType t)
        {
            if (t.Tag == Tag.NdArray) return true;
            if (t.Tag != Tag.Tuple) return false;
            foreach (var item in t.Items)
                if (ContainsArrays(item)) return true;
            return false;
        }

        /// <summary>
        /// True when a value of <paramref name="t"/> may hold an NdArray anywhere inside (an array or generic argument of
        /// it, a property or field of a record): decided from the CLR type, so every container the codec carries counts.
        /// </summary>
        static bool MayHoldArrays(Type t, int depth)
        {
            if (t == typeof(NdArray)) return true;
            if (depth > 8 || t.IsPrimitive || t.IsEnum || t == typeof(string) || t == typeof(void) || t.IsPointer) return false;
            if (t.IsArray) return MayHoldArrays(t.GetElementType(), depth + 1);
            if (t.IsGenericType)
            {
                foreach (Type a in t.GetGenericArguments())
                    if (MayHoldArrays(a, depth + 1)) return true;
                return false;
            }
            if (t.Namespace != null && t.Namespace.StartsWith("System", StringComparison.Ordinal)) return false;
            foreach (PropertyInfo p in t.GetProperties(BindingFlags.Public | BindingFlags.Instance))
                if (MayHoldArrays(p.PropertyType, depth + 1)) return true;
            foreach (FieldInfo f in t.GetFields(BindingFlags.Public | BindingFlags.Instance))
                if (MayHoldArrays(f.FieldType, depth + 1)) return true;
            return false;
        }

        /// <summary>The type as C# writes it (int?, not System.Nullable`1[...]), the part LessPy refuses, and what to use instead.</summary>
        static string Describe(Type t, Type bad)
        {
            string hint = WireType.Hint(bad ?? t);
            if (bad != null && bad != t) return WireType.CSharpName(t) + " (its part " + WireType.CSharpName(bad) + (hint.Length > 0 ? ": " + hint : "") + ")";
            return WireType.CSharpName(t) + (hint.Length > 0 ? " (" + hint + ")" : "");
        }
    }
}
