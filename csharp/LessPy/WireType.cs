using System;
using System.Collections.Generic;
using System.Reflection;
using System.Text;

namespace LessPy
{
    /// <summary>
    /// A C# type the protocol can carry (PROTOCOL.md sections 4 and 5), with what encoding and decoding it needs.
    /// Made once per interface method when the proxy is bound; calls only read it.
    /// </summary>
    internal sealed class WireType
    {
        /// <summary>The descriptor tag (for a nullable value type: <see cref="Tag.Optional"/>).</summary>
        public readonly Tag Tag;
        /// <summary>The C# type.</summary>
        public readonly Type ClrType;
        /// <summary>Tuple items; record fields; or the one element / value / inner type of a list, dict or nullable.</summary>
        public readonly WireType[] Items;
        /// <summary>ARRAY, SCALAR and RECT_ARRAY: the dtype.</summary>
        public readonly DType DType;
        /// <summary>RECT_ARRAY: the rank.</summary>
        public readonly int Rank;
        /// <summary>RECORD: the field names as they travel (snake_case).</summary>
        public readonly string[] Names;
        /// <summary>True when <see cref="ClrType"/> is an enum carried as its underlying integer.</summary>
        public readonly bool IsEnum;

        FieldInfo[] _fields;                        // tuples: Item1..ItemN
        ConstructorInfo _ctor;                      // tuples; records built through a constructor
        MemberInfo[] _members;                      // records: a FieldInfo or PropertyInfo per field
        Dictionary<string, int> _byKey;             // records: field_key(name) -> index
        internal ListAdapter Lists;                 // LIST
        internal DictAdapter Dicts;                 // DICT

        WireType(Tag tag, Type clr)
        {
            Tag = tag;
            ClrType = clr;
        }

        WireType(Tag tag, Type clr, DType dtype, int rank, bool isEnum)
        {
            Tag = tag;
            ClrType = clr;
            DType = dtype;
            Rank = rank;
            IsEnum = isEnum;
        }

        WireType(Tag tag, Type clr, WireType[] items, string[] names)
        {
            Tag = tag;
            ClrType = clr;
            Items = items;
            Names = names;
        }

        WireType(Type tupleType, WireType[] items)
        {
            Tag = Tag.Tuple;
            ClrType = tupleType;
            Items = items;
            _fields = new FieldInfo[items.Length];
            var types = new Type[items.Length];
            for (int i = 0; i < items.Length; i++)
            {
                _fields[i] = tupleType.GetField("Item" + (i + 1));
                types[i] = items[i].ClrType;
            }
            _ctor = tupleType.GetConstructor(types);
        }

        /// <summary>NONE: a void return, or a NONE value decoded without a declared type.</summary>
        public static readonly WireType Void = new WireType(Tag.None, typeof(void));
        static readonly WireType NoneValue = new WireType(Tag.None, typeof(object));
        static readonly WireType[] Scalars =
        {
            new WireType(Tag.Bool, typeof(bool)), new WireType(Tag.Int32, typeof(int)), new WireType(Tag.Int64, typeof(long)),
            new WireType(Tag.Float32, typeof(float)), new WireType(Tag.Float64, typeof(double)), new WireType(Tag.String, typeof(string)),
            new WireType(Tag.Bytes, typeof(byte[])), new WireType(Tag.Int32Array, typeof(int[])), new WireType(Tag.Int32Jagged, typeof(int[][])),
            new WireType(Tag.NdArray, typeof(NdArray)), new WireType(Tag.DateTime, typeof(DateTime)),
            new WireType(Tag.TimeSpan, typeof(TimeSpan)), new WireType(Tag.Guid, typeof(Guid)),
        };

        static readonly Type[] TupleDefinitions =
        {
            typeof(ValueTuple<>), typeof(ValueTuple<,>), typeof(ValueTuple<,,>), typeof(ValueTuple<,,,>),
            typeof(ValueTuple<,,,,>), typeof(ValueTuple<,,,,,>), typeof(ValueTuple<,,,,,,>),
        };

        static readonly Type[] ListDefinitions =
        {
            typeof(List<>), typeof(IList<>), typeof(IReadOnlyList<>), typeof(ICollection<>), typeof(IReadOnlyCollection<>),
        };

        static readonly Type[] DictDefinitions =
        {
            typeof(Dictionary<,>), typeof(IDictionary<,>), typeof(IReadOnlyDictionary<,>),
        };

        /// <summary>The tag a non-null value of this type travels with.</summary>
        public Tag ValueTag
        {
            get
            {
                if (Tag == Tag.Optional) return Items[0].ValueTag;
                return Tag == Tag.RectArray ? Tag.NdArray : Tag;
            }
        }

        /// <summary>True when a NONE value stands for it (null reference, nullable value type, or void).</summary>
        public bool AcceptsNone
        {
            get { return Tag == Tag.None || Tag == Tag.Optional || !ClrType.IsValueType; }
        }

        /// <summary>The wire type of a C# type, or null (with the offending type in <paramref name="unsupported"/>).</summary>
        public static WireType For(Type t, bool isReturn, out Type unsupported)
        {
            return For(t, isReturn, out unsupported, new List<Type>());
        }

        static WireType For(Type t, bool isReturn, out Type unsupported, List<Type> visiting)
        {
            unsupported = null;
            if (isReturn && t == typeof(void)) return Void;
            foreach (var s in Scalars)
                if (s.ClrType == t) return s;
            if (t.IsEnum) return ForEnum(t, out unsupported);
            DType dt = ScalarDType(t);
            if (dt != null) return new WireType(Tag.Scalar, t, dt, 0, false);
            if (t.IsArray)
            {
                Type e = t.GetElementType();
                int rank = t.GetArrayRank();
                DType edt = DType.ForClrType(e);
                if (rank == 1 && t == e.MakeArrayType())          // a vector, not a [*] array of rank 1
                {
                    if (edt != null) return new WireType(Tag.Array, t, edt, 1, false);
                    return ListFor(t, e, typeof(ArrayAdapter<>), out unsupported, visiting);
                }
                if (rank >= 2 && rank <= Codec.MaxDims && edt != null) return new WireType(Tag.RectArray, t, edt, rank, false);
                unsupported = t;
                return null;
            }
            if (t.IsGenericType && !t.IsGenericTypeDefinition)
            {
                Type def = t.GetGenericTypeDefinition();
                Type[] args = t.GetGenericArguments();
                if (def == typeof(Nullable<>))
                {
                    WireType inner = For(args[0], false, out unsupported, visiting);
                    if (inner == null) return null;
                    return new WireType(Tag.Optional, t, new[] { inner }, null);
                }
                int n = Array.IndexOf(TupleDefinitions, def) + 1;
                if (n > 0)
                {
                    var items = new WireType[n];
                    for (int i = 0; i < n; i++)
                    {
                        items[i] = For(args[i], false, out unsupported, visiting);
                        if (items[i] == null) return null;
                    }
                    return new WireType(t, items);
                }
                if (Array.IndexOf(ListDefinitions, def) >= 0)
                    return ListFor(t, args[0], typeof(GenericListAdapter<>), out unsupported, visiting);
                if (Array.IndexOf(DictDefinitions, def) >= 0)
                {
                    if (args[0] != typeof(string)) { unsupported = t; return null; }
                    WireType value = For(args[1], false, out unsupported, visiting);
                    if (value == null) return null;
                    var w = new WireType(Tag.Dict, t, new[] { value }, null);
                    w.Dicts = (DictAdapter)Activator.CreateInstance(typeof(DictAdapter<>).MakeGenericType(args[1]));
                    return w;
                }
            }
            if (RecordProblem(t, visiting) == null) return ForRecord(t, out unsupported, visiting);
            unsupported = t;
            return null;
        }

        static WireType ListFor(Type t, Type element, Type adapter, out Type unsupported, List<Type> visiting)
        {
            WireType item = For(element, false, out unsupported, visiting);
            if (item == null) return null;
            var w = new WireType(Tag.List, t, new[] { item }, null);
            w.Lists = (ListAdapter)Activator.CreateInstance(adapter.MakeGenericType(element));
            return w;
        }

        static DType ScalarDType(Type t)
        {
            if (t == typeof(sbyte) || t == typeof(byte) || t == typeof(short) || t == typeof(ushort) || t == typeof(uint) || t == typeof(ulong))
                return DType.ForClrType(t);
            return null;
        }

        static WireType ForEnum(Type t, out Type unsupported)
        {
            unsupported = null;
            Type u = Enum.GetUnderlyingType(t);
            if (u == typeof(int)) return new WireType(Tag.Int32, t, null, 0, true);
            if (u == typeof(long)) return new WireType(Tag.Int64, t, null, 0, true);
            DType dt = ScalarDType(u);
            if (dt != null) return new WireType(Tag.Scalar, t, dt, 0, true);
            unsupported = t;
            return null;
        }

        // ---------------------------------------------------------------- records

        static bool IsSystemType(Type t)
        {
            string ns = t.Namespace ?? "";
            return t.Assembly == typeof(object).Assembly || ns == "System" || ns.StartsWith("System.", StringComparison.Ordinal)
                || ns.StartsWith("Microsoft.", StringComparison.Ordinal) || t == typeof(NdArray);
        }

        /// <summary>Why <paramref name="t"/> cannot be a record, or null when it can.</summary>
        static string RecordProblem(Type t, List<Type> visiting)
        {
            if (t.IsPrimitive || t.IsPointer || t.IsByRef || t.IsArray || t.IsEnum || IsSystemType(t) || t.ContainsGenericParameters
                || typeof(Delegate).IsAssignableFrom(t))
                return "";
            if (t.IsInterface || t.IsAbstract) return "it is an interface or abstract class: declare a concrete class or struct";
            if (typeof(System.Collections.IEnumerable).IsAssignableFrom(t))
                return "it is a collection: declare it as T[], List<T> or Dictionary<string, T>";
            if (visiting.Contains(t)) return "it contains itself, and a type that refers to itself cannot be carried by value";
            MemberInfo[] members;
            ConstructorInfo ctor;
            return RecordMembers(t, out members, out ctor);
        }

        /// <summary>
        /// The members a record carries: public properties with a getter and a setter (any visibility), then public
        /// instance fields, each in declaration order; or, for a type without a parameterless constructor, the members named by the
        /// parameters of its public constructor (positional records and immutable classes).
        /// </summary>
        static string RecordMembers(Type t, out MemberInfo[] members, out ConstructorInfo ctor)
        {
            members = null;
            ctor = null;
            var all = new List<MemberInfo>();
            foreach (MemberInfo m in t.GetMembers(BindingFlags.Public | BindingFlags.Instance))
            {
                var f = m as FieldInfo;
                var p = m as PropertyInfo;
                if (f != null) all.Add(f);
                else if (p != null && p.GetIndexParameters().Length == 0 && p.GetGetMethod() != null) all.Add(p);
            }
            // properties, then fields, each in declaration order (metadata order; the two live in separate tables)
            all.Sort((a, b) => a is PropertyInfo != b is PropertyInfo ? (a is PropertyInfo ? -1 : 1) : a.MetadataToken.CompareTo(b.MetadataToken));
            var chosen = new List<MemberInfo>();
            if (t.IsValueType || t.GetConstructor(Type.EmptyTypes) != null)
            {
                foreach (MemberInfo m in all)
                {
                    var p = m as PropertyInfo;
                    if (p == null || p.GetSetMethod(true) != null) chosen.Add(m);
                }
            }
            else
            {
                foreach (ConstructorInfo c in t.GetConstructors())
                {
                    ParameterInfo[] ps = c.GetParameters();
                    if (ps.Length == 0 || (ctor != null && ctor.GetParameters().Length >= ps.Length)) continue;
                    var matched = new List<MemberInfo>();
                    foreach (ParameterInfo p in ps)
                    {
                        MemberInfo hit = null;
                        foreach (MemberInfo m in all)
                            if (Key(m.Name) == Key(p.Name) && MemberType(m) == p.ParameterType) hit = m;
                        if (hit == null) break;
                        matched.Add(hit);
                    }
                    if (matched.Count == ps.Length)
                    {
                        ctor = c;
                        chosen = matched;
                    }
                }
                if (ctor == null)
                    return "it has no public parameterless constructor, and no public constructor whose parameters all match its properties";
            }
            if (chosen.Count == 0) return "it has no public settable properties or fields";
            if (chosen.Count > Codec.MaxFields) return "it has more than " + Codec.MaxFields + " properties and fields";
            var seen = new Dictionary<string, string>();
            foreach (MemberInfo m in chosen)
            {
                string other;
                if (seen.TryGetValue(Key(m.Name), out other))
                    return "its members " + other + " and " + m.Name + " would both match the Python field " + SnakeCase(m.Name);
                seen[Key(m.Name)] = m.Name;
                if (Encoding.UTF8.GetByteCount(SnakeCase(m.Name)) > 255) return "the name of its member " + m.Name + " is longer than 255 bytes";
            }
            members = chosen.ToArray();
            return null;
        }

        static Type MemberType(MemberInfo m)
        {
            var f = m as FieldInfo;
            return f != null ? f.FieldType : ((PropertyInfo)m).PropertyType;
        }

        static WireType ForRecord(Type t, out Type unsupported, List<Type> visiting)
        {
            unsupported = null;
            MemberInfo[] members;
            ConstructorInfo ctor;
            RecordMembers(t, out members, out ctor);
            var items = new WireType[members.Length];
            var names = new string[members.Length];
            visiting.Add(t);
            try
            {
                for (int i = 0; i < members.Length; i++)
                {
                    items[i] = For(MemberType(members[i]), false, out unsupported, visiting);
                    if (items[i] == null) return null;
                    names[i] = SnakeCase(members[i].Name);
                }
            }
            finally { visiting.Remove(t); }
            var w = new WireType(Tag.Record, t, items, names);
            w._members = members;
            w._ctor = ctor;
            w._byKey = new Dictionary<string, int>();
            for (int i = 0; i < names.Length; i++) w._byKey[Key(names[i])] = i;
            return w;
        }

        /// <summary>
        /// How record field names match: underscores and the case of ASCII letters do not count (max_value == MaxValue); any
        /// other character is compared as it is (PROTOCOL.md, Records; the Python server's field_key is the same rule).
        /// </summary>
        internal static string Key(string name)
        {
            var sb = new StringBuilder(name.Length);
            foreach (char c in name)
                if (c != '_') sb.Append(c >= 'A' && c <= 'Z' ? (char)(c + 32) : c);
            return sb.ToString();
        }

        /// <summary>
        /// PascalCase to snake_case: MaxValue → max_value, HTTPCode → http_code, X → x. An underscore goes before each
        /// ASCII capital that starts a word: one after anything but a capital or an underscore, or the last capital of an
        /// acronym when a lowercase letter follows. Only ASCII letters change case. The inverse of the Python stub
        /// generator's pascal_case on the names a stub makes (tests/vectors/names.txt).
        /// </summary>
        internal static string SnakeCase(string name)
        {
            var sb = new StringBuilder(name.Length + 4);
            for (int i = 0; i < name.Length; i++)
            {
                char c = name[i];
                if (!IsAsciiUpper(c))
                {
                    sb.Append(c);
                    continue;
                }
                bool startsWord = i > 0 && (IsAsciiUpper(name[i - 1])
                    ? i + 1 < name.Length && name[i + 1] >= 'a' && name[i + 1] <= 'z'
                    : name[i - 1] != '_');
                if (startsWord) sb.Append('_');
                sb.Append((char)(c + 32));
            }
            return sb.ToString();
        }

        static bool IsAsciiUpper(char c) { return c >= 'A' && c <= 'Z'; }

        /// <summary>The index of a record field by its wire name, or -1.</summary>
        public int FieldIndex(string wireName)
        {
            int i;
            return _byKey.TryGetValue(Key(wireName), out i) ? i : -1;
        }

        /// <summary>A record's field value.</summary>
        public object GetField(object record, int i)
        {
            var f = _members[i] as FieldInfo;
            return f != null ? f.GetValue(record) : ((PropertyInfo)_members[i]).GetValue(record, null);
        }

        /// <summary>A new record from its field values (in field order).</summary>
        public object MakeRecord(object[] values)
        {
            if (_ctor != null) return _ctor.Invoke(values);
            object r = Activator.CreateInstance(ClrType, true);        // a struct is boxed once: the setters below change the box
            for (int i = 0; i < values.Length; i++)
            {
                var f = _members[i] as FieldInfo;
                if (f != null) f.SetValue(r, values[i]);
                else ((PropertyInfo)_members[i]).SetValue(r, values[i], null);
            }
            return r;
        }

        // ---------------------------------------------------------------- tuples

        /// <summary>The tuple type of decoded items (a NONE item becomes an object field holding null).</summary>
        public static WireType TupleOf(WireType[] items)
        {
            var types = new Type[items.Length];
            for (int i = 0; i < items.Length; i++) types[i] = items[i].ClrType;
            return new WireType(TupleDefinitions[items.Length - 1].MakeGenericType(types), items);
        }

        public static WireType NoneItem { get { return NoneValue; } }

        public object GetItem(object tuple, int i) { return _fields[i].GetValue(tuple); }

        public object MakeTuple(object[] values) { return _ctor.Invoke(values); }

        // ---------------------------------------------------------------- descriptors

        /// <summary>Appends the type descriptor (PROTOCOL.md section 5).</summary>
        public void WriteDescriptor(List<byte> to)
        {
            to.Add((byte)Tag);
            switch (Tag)
            {
                case Tag.Tuple:
                    to.Add((byte)Items.Length);
                    foreach (var item in Items) item.WriteDescriptor(to);
                    break;
                case Tag.Array:
                case Tag.Scalar:
                    to.Add(DType.Code);
                    break;
                case Tag.RectArray:
                    to.Add(DType.Code);
                    to.Add((byte)Rank);
                    break;
                case Tag.List:
                case Tag.Dict:
                case Tag.Optional:
                    Items[0].WriteDescriptor(to);
                    break;
                case Tag.Record:
                {
                    to.Add(ClrType.IsValueType ? (byte)1 : (byte)0);
                    byte[] name = Encoding.UTF8.GetBytes(ClrType.Name);
                    int n = Math.Min(name.Length, 255);
                    while (n > 0 && n < name.Length && (name[n] & 0xC0) == 0x80) n--;    // cut on a character boundary
                    to.Add((byte)n);
                    for (int i = 0; i < n; i++) to.Add(name[i]);
                    to.Add((byte)Items.Length);
                    to.Add((byte)(Items.Length >> 8));
                    for (int i = 0; i < Items.Length; i++)
                    {
                        byte[] f = Encoding.UTF8.GetBytes(Names[i]);
                        to.Add((byte)f.Length);
                        to.AddRange(f);
                        Items[i].WriteDescriptor(to);
                    }
                    break;
                }
            }
        }

        public override string ToString()
        {
            return ClrType == typeof(void) ? "void" : CSharpName(ClrType);
        }

        // ---------------------------------------------------------------- names and hints for messages

        static readonly Dictionary<Type, string> Keywords = new Dictionary<Type, string>
        {
            { typeof(void), "void" }, { typeof(bool), "bool" }, { typeof(byte), "byte" }, { typeof(sbyte), "sbyte" },
            { typeof(short), "short" }, { typeof(ushort), "ushort" }, { typeof(int), "int" }, { typeof(uint), "uint" },
            { typeof(long), "long" }, { typeof(ulong), "ulong" }, { typeof(float), "float" }, { typeof(double), "double" },
            { typeof(decimal), "decimal" }, { typeof(char), "char" }, { typeof(string), "string" }, { typeof(object), "object" },
        };

        /// <summary>A type as C# source writes it: int?, List&lt;int&gt;, double[,], (int, string).</summary>
        public static string CSharpName(Type t)
        {
            if (t == null) return "?";
            string k;
            if (Keywords.TryGetValue(t, out k)) return k;
            if (t.IsByRef) return CSharpName(t.GetElementType()) + "&";
            if (t.IsPointer) return CSharpName(t.GetElementType()) + "*";
            if (t.IsArray) return CSharpName(t.GetElementType()) + "[" + new string(',', t.GetArrayRank() - 1) + "]";
            if (!t.IsGenericType) return t.Name;
            Type def = t.GetGenericTypeDefinition();
            Type[] args = t.GetGenericArguments();
            if (def == typeof(Nullable<>)) return CSharpName(args[0]) + "?";
            var parts = new string[args.Length];
            for (int i = 0; i < args.Length; i++) parts[i] = t.IsGenericTypeDefinition ? "" : CSharpName(args[i]);
            if (Array.IndexOf(TupleDefinitions, def) >= 0) return "(" + string.Join(", ", parts) + ")";
            string name = t.Name;
            int tick = name.IndexOf('`');
            if (tick >= 0) name = name.Substring(0, tick);
            return name + "<" + string.Join(", ", parts) + ">";
        }

        /// <summary>What to use instead of a type <see cref="For(Type, bool, out Type)"/> refused.</summary>
        public static string Hint(Type bad)
        {
            if (bad == null) return "";
            if (bad == typeof(decimal)) return "use double, or string for exact decimal values";
            if (bad == typeof(char)) return "use string";
            if (bad == typeof(object)) return "declare a concrete type";
            if (bad == typeof(void)) return "void is only a return type";
            if (bad == typeof(DateTimeOffset)) return "use DateTime: a UTC DateTime becomes an aware UTC datetime";
            if (bad == typeof(IntPtr) || bad == typeof(UIntPtr) || bad.IsPointer) return "pointers cannot cross processes; use long or NdArray";
            if (bad.IsByRef) return "ref/out/in parameters cannot be carried";
            if (bad.IsArray)
            {
                if (bad.GetArrayRank() > 1) return "rectangular arrays carry numbers and bool only; use T[][] or List<List<T>>";
                return "its element type cannot be carried";
            }
            if (bad.IsEnum) return "enums carry their underlying integer; this one has none LessPy knows";
            if (bad.IsGenericType)
            {
                Type def = bad.GetGenericTypeDefinition();
                Type[] args = bad.GetGenericArguments();
                if (Array.IndexOf(DictDefinitions, def) >= 0) return "dictionary keys must be string: Python dict keys become str";
                if (def == typeof(IEnumerable<>) || def == typeof(IEnumerator<>) || def == typeof(ISet<>) || def == typeof(HashSet<>))
                    return "use " + CSharpName(args[0]) + "[] or List<" + CSharpName(args[0]) + ">";
                if (def.FullName != null && def.FullName.StartsWith("System.Threading.Tasks.", StringComparison.Ordinal))
                    return "a Task can only be what a method returns";
                if (def.FullName != null && def.FullName.StartsWith("System.Tuple`", StringComparison.Ordinal))
                    return "use a ValueTuple such as (int, string)";
                if (def.FullName != null && def.FullName.StartsWith("System.ValueTuple`8", StringComparison.Ordinal))
                    return "a tuple has at most " + Codec.MaxTuple + " items: nest tuples";
            }
            if (typeof(System.Collections.IEnumerable).IsAssignableFrom(bad) && bad != typeof(string))
                return "use T[], List<T> or Dictionary<string, T>";
            string why = RecordProblem(bad, new List<Type>());
            if (!string.IsNullOrEmpty(why)) return "as a record, " + why;
            if (why == null)
            {
                Type inner;
                if (For(bad, false, out inner) == null && inner == bad)
                    return "as a record, it contains itself, and a type that refers to itself cannot be carried by value";
                return inner == null ? "" : "its member of type " + CSharpName(inner) + " cannot be carried: " + Hint(inner);
            }
            return "use one of the supported types";
        }
    }
}
