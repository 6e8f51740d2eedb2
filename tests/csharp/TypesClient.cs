// End-to-end checks of every type and every error against a server exporting tests/pymodules/types_module.py.
//   mcs -unsafe -optimize+ -r:LessPy.dll TypesClient.cs && mono TypesClient.exe <work folder>
// Prints "CHECK <name> ok" / "CHECK <name> FAIL <details>"; exits 0 only when all passed.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Threading;
using LessPy;

public interface ITypes
{
    [PythonImport] int echo_int(int x);
    [PythonImport] long echo_long(long x);
    [PythonImport] float echo_float(float x);
    [PythonImport] double echo_double(double x);
    [PythonImport] bool echo_bool(bool x);
    [PythonImport] string echo_string(string x);
    [PythonImport] byte[] echo_bytes(byte[] x);
    [PythonImport] int[] echo_int_array(int[] x);
    [PythonImport] int[][] echo_jagged(int[][] x);
    [PythonImport] NdArray echo_ndarray(NdArray x);
    [PythonImport] (int, double, string) echo_tuple3((int, double, string) x);
    [PythonImport] ((int, (long, bool)), string) echo_nested(((int, (long, bool)), string) x);
    [PythonImport] (int, double, string) make_tuple_from_list();
    [PythonImport] void returns_none();
    [PythonImport] int add_ints(int a, int b);
    [PythonImport] NdArray inc_ndarray(NdArray nd);
    [PythonImport] (NdArray, double) inc_ndarray_timed(NdArray nd);
    [PythonImport] long int_to_long(int x);
    [PythonImport] double np_scalar();
    [PythonImport] int[] list_to_int_array(int n);
    [PythonImport] int overflow();
    [PythonImport] void raises(string message);
    [PythonImport] void bad_void();
    [PythonImport] int wrong_type();
    [PythonImport] byte[] big_result(int n);
    [PythonImport] int sleep_then(double seconds, int value);
    [PythonImport("no_such_function")] int missing();
    [PythonImport("add_ints")] int add_ints_one_arg(int a);
    [PythonImport("_private")] int private_function();
    [PythonImport("not_a_function")] int not_callable();

    // issue 9: the types .NET and Python developers use
    [PythonImport] int? echo_nullable_int(int? x);
    [PythonImport] double? echo_nullable_double(double? x);
    [PythonImport] bool? echo_nullable_bool(bool? x);
    [PythonImport] long? echo_nullable_long(long? x);
    [PythonImport] float? echo_nullable_float(float? x);
    [PythonImport] DateTime? echo_nullable_datetime(DateTime? x);
    [PythonImport] Color? echo_nullable_color(Color? x);
    [PythonImport] double[] echo_doubles(double[] x);
    [PythonImport] float[] echo_floats(float[] x);
    [PythonImport] long[] echo_longs(long[] x);
    [PythonImport] short[] echo_shorts(short[] x);
    [PythonImport] ushort[] echo_ushorts(ushort[] x);
    [PythonImport] uint[] echo_uints(uint[] x);
    [PythonImport] ulong[] echo_ulongs(ulong[] x);
    [PythonImport] sbyte[] echo_sbytes(sbyte[] x);
    [PythonImport] bool[] echo_bools(bool[] x);
    [PythonImport("describe_array")] string describe_doubles(double[] x);
    [PythonImport("describe_array")] string describe_bools(bool[] x);
    [PythonImport("describe_array")] string describe_matrix(float[,] x);
    [PythonImport("describe_value")] string describe_strings(string[] x);
    [PythonImport("describe_value")] string describe_list(List<int> x);
    [PythonImport("describe_value")] string describe_dict(Dictionary<string, int> x);
    [PythonImport("describe_value")] string describe_datetime(DateTime x);
    [PythonImport("describe_value")] string describe_timespan(TimeSpan x);
    [PythonImport("describe_value")] string describe_guid(Guid x);
    [PythonImport("describe_value")] string describe_color(Color x);
    [PythonImport("describe_value")] string describe_nullable(int? x);
    [PythonImport] double[] doubles_from_list(int n);
    [PythonImport] float[] floats_from_tuple();
    [PythonImport] short[] shorts_from_ndarray();
    [PythonImport] bool[] bools_from_list();
    [PythonImport] string[] strings_from_tuple();
    [PythonImport] string[] echo_strings(string[] x);
    [PythonImport] List<string> echo_string_list(List<string> x);
    [PythonImport] IReadOnlyList<int> echo_ro_list(IReadOnlyList<int> x);
    [PythonImport] IList<double> echo_ilist(IList<double> x);
    [PythonImport] Dictionary<string, double> echo_dict(Dictionary<string, double> x);
    [PythonImport] IReadOnlyDictionary<string, string[]> echo_ro_dict(IReadOnlyDictionary<string, string[]> x);
    [PythonImport] List<string> dict_keys(Dictionary<string, int> d);
    [PythonImport] Dictionary<string, double[]> make_dict();
    [PythonImport] Dictionary<string, double> dict_with_int_key();
    [PythonImport] DateTime echo_datetime(DateTime x);
    [PythonImport] string datetime_info(DateTime x);
    [PythonImport] DateTime aware_plus_two();
    [PythonImport] DateTime naive_datetime();
    [PythonImport] TimeSpan echo_timespan(TimeSpan x);
    [PythonImport] double timespan_seconds(TimeSpan x);
    [PythonImport] TimeSpan make_timespan();
    [PythonImport] Guid echo_guid(Guid x);
    [PythonImport] string guid_text(Guid x);
    [PythonImport] Guid guid_from_text(string s);
    [PythonImport] Color echo_color(Color c);
    [PythonImport] string color_name(Color c);
    [PythonImport] Color next_color(Color c);
    [PythonImport] Color bad_color();
    [PythonImport] Level echo_level(Level l);
    [PythonImport] byte echo_byte(byte x);
    [PythonImport] sbyte echo_sbyte(sbyte x);
    [PythonImport] short echo_short(short x);
    [PythonImport] ushort echo_ushort(ushort x);
    [PythonImport] uint echo_uint(uint x);
    [PythonImport] ulong echo_ulong(ulong x);
    [PythonImport("echo_int")] byte byte_overflow(int x);
    [PythonImport] double[,] echo_matrix(double[,] m);
    [PythonImport] int[,,] echo_cube(int[,,] m);
    [PythonImport] bool[,] echo_bool_matrix(bool[,] m);
    [PythonImport] double[,] transpose(double[,] m);
    [PythonImport] double[,] fortran_ndarray();
    [PythonImport] NdArray strided_ndarray();
    [PythonImport] long[,] matrix_from_lists();
    [PythonImport("fortran_ndarray")] float[,,] wrong_rank();
    [PythonImport] Point move(Point p, double dx);
    [PythonImport] string inspect_shape(Shape s);
    [PythonImport] Shape grow_shape(Shape s);
    [PythonImport] string untyped_record(Point p);
    [PythonImport] Pair make_pair();
    [PythonImport] List<Point> echo_points(List<Point> ps);
    [PythonImport] Pixel echo_pixel(Pixel p);
    [PythonImport] Pixel? echo_nullable_pixel(Pixel? p);
    [PythonImport] Point record_missing_field();
    [PythonImport] Point record_extra_field();
    [PythonImport] DateTime not_a_datetime();
    [PythonImport("echo")] Point echo_point(Point p);
    [PythonImport] List<NdArray> nd_list(int n);
    [PythonImport("echo")] Immutable echo_immutable(Immutable p);
    [PythonImport("untyped_record")] string untyped_immutable(Immutable p);
}

/// <summary>No parameterless constructor: built through the constructor whose parameters match its properties.</summary>
public sealed class Immutable
{
    public Immutable(string label, double[] values) { Label = label; Values = values; }
    public string Label { get; }
    public double[] Values { get; }
    public int Count { get { return Values == null ? 0 : Values.Length; } }
}

public enum Color { Red = 1, Green = 2, Blue = 4 }
public enum Level : byte { Low = 1, High = 200 }
public class Point { public double X { get; set; } public double Y { get; set; } }
public class Shape
{
    public string Name { get; set; }
    public Point Origin { get; set; }
    public double[] Samples { get; set; }
    public List<Point> Corners { get; set; }
    public Color Color { get; set; }
    public Dictionary<string, int> Tags { get; set; }
    public Point Parent { get; set; }
}
public struct Pixel { public byte R; public byte G; public byte B; }
public struct Pair { public string FirstName; public int Score; }
public class Node { public int Value { get; set; } public Node Next { get; set; } }
public interface IBadNullable { [PythonImport] decimal? f(); }
public interface IBadDictKey { [PythonImport] void f(Dictionary<int, string> d); }
public interface IBadRecursive { [PythonImport] void f(Node n); }
public interface IBadRectStrings { [PythonImport] string[,] f(); }
public interface IBadEnumerable { [PythonImport] void f(IEnumerable<int> xs); }
public class MyList : List<int> { }
public interface IBadCollection { [PythonImport] void f(MyList l); }

public interface INoAttribute { int add_ints(int a, int b); }
public interface IBadType { [PythonImport] decimal add_ints(decimal a, int b); }
public interface IBadTuple { [PythonImport] (int, HashSet<int>) f(); }

static class TypesClient
{
    static int failures;

    static void Check(string name, Action body)
    {
        try { body(); Console.WriteLine("CHECK " + name + " ok"); }
        catch (Exception e)
        {
            failures++;
            string d = (e is CheckFailed ? "" : "unexpected " + e.GetType().Name + ": ") + e.Message;
            Console.WriteLine("CHECK " + name + " FAIL " + d.Replace("\r", " ").Replace("\n", " | "));
        }
    }
    sealed class CheckFailed : Exception { public CheckFailed(string m) : base(m) { } }
    static void True(bool c, string what) { if (!c) throw new CheckFailed(what); }
    static void Eq<T>(T expected, T actual, string what = "value")
    {
        if (!EqualityComparer<T>.Default.Equals(expected, actual)) throw new CheckFailed(what + ": expected <" + expected + "> got <" + actual + ">");
    }
    static void SeqEq<T>(IEnumerable<T> expected, IEnumerable<T> actual, string what = "sequence")
    {
        if (actual == null || !expected.SequenceEqual(actual))
            throw new CheckFailed(what + ": expected [" + string.Join(",", expected) + "] got [" + (actual == null ? "null" : string.Join(",", actual)) + "]");
    }
    static TE Throws<TE>(Action body) where TE : Exception
    {
        try { body(); }
        catch (TE e) { return e; }
        catch (Exception e) { throw new CheckFailed("expected " + typeof(TE).Name + ", got " + e.GetType().Name + ": " + e.Message); }
        throw new CheckFailed("expected " + typeof(TE).Name + ", nothing was thrown");
    }

    static ITypes api;
    static void StillWorks() { Eq(42, api.add_ints(2, 40), "the call after the error"); }

    static void EchoNd<T>(string name, T[] data, params int[] shape) where T : struct
    {
        Check("ndarray_" + name, () =>
        {
            var nd = NdArray.FromArray(data, shape);
            NdArray r = api.echo_ndarray(nd);
            Eq(nd.Dtype, r.Dtype, "dtype");
            SeqEq(nd.Shape, r.Shape, "shape");
            SeqEq(nd.Data, r.Data, "data");
            SeqEq(data, r.ToArray<T>(), "elements");
        });
    }

    static void CheckUnsupported<T>(string folder, string expected) where T : class
    {
        Check("reject_" + typeof(T).Name, () =>
        {
            string m = Throws<NotSupportedException>(() => LessPythonInvoke.Connect<T>(folder)).Message;
            True(m.Contains(expected) && !m.Contains("`1") && !m.Contains("System."), m);
        });
    }

    static void Echo<T>(string name, Func<T, T> f, params T[] values)
    {
        Check(name, () => { foreach (T v in values) Eq(v, f(v), "echo of " + v); });
    }

    static void EchoArray<T>(string name, Func<T[], T[]> f, params T[] values)
    {
        Check(name, () =>
        {
            SeqEq(values, f(values));
            SeqEq(new T[0], f(new T[0]), "empty");
            Eq(null, f(null), "null");
        });
    }

    static void TypeChecks()
    {
        Echo<int?>("nullable_int", api.echo_nullable_int, null, 0, int.MinValue, int.MaxValue);
        Echo<double?>("nullable_double", api.echo_nullable_double, null, double.NegativeInfinity, -0.0, double.MaxValue);
        Echo<bool?>("nullable_bool", api.echo_nullable_bool, null, true, false);
        Echo<long?>("nullable_long", api.echo_nullable_long, null, long.MinValue, long.MaxValue);
        Echo<float?>("nullable_float", api.echo_nullable_float, null, float.Epsilon, float.MaxValue);
        Echo<DateTime?>("nullable_datetime", api.echo_nullable_datetime, null, new DateTime(2020, 1, 2, 3, 4, 5, DateTimeKind.Utc));
        Echo<Color?>("nullable_enum", api.echo_nullable_color, null, Color.Blue);
        Check("nullable_arrives_as_none", () => { Eq("builtins.NoneType:None", api.describe_nullable(null)); Eq("builtins.int:5", api.describe_nullable(5)); });
        EchoArray<double>("array_double", api.echo_doubles, 0.0, -0.0, Math.PI, double.NaN, double.PositiveInfinity, double.NegativeInfinity, double.MaxValue, double.Epsilon);
        EchoArray<float>("array_float", api.echo_floats, 1.5f, float.NaN, float.MinValue, float.Epsilon);
        EchoArray<long>("array_long", api.echo_longs, long.MinValue, -1L, 0L, long.MaxValue);
        EchoArray<short>("array_short", api.echo_shorts, short.MinValue, (short)-1, short.MaxValue);
        EchoArray<ushort>("array_ushort", api.echo_ushorts, ushort.MinValue, ushort.MaxValue);
        EchoArray<uint>("array_uint", api.echo_uints, 0u, uint.MaxValue);
        EchoArray<ulong>("array_ulong", api.echo_ulongs, 0UL, ulong.MaxValue, 1UL << 63);
        EchoArray<sbyte>("array_sbyte", api.echo_sbytes, sbyte.MinValue, (sbyte)0, sbyte.MaxValue);
        EchoArray<bool>("array_bool", api.echo_bools, true, false, true, true);
        Check("array_big", () => { var big = Enumerable.Range(0, 100000).Select(i => i * 0.5).ToArray(); SeqEq(big, api.echo_doubles(big)); });
        Check("array_is_readonly_ndarray_view", () =>
        {
            Eq("ndarray:float64:[3]:False", api.describe_doubles(new[] { 1.0, 2.0, 3.0 }));
            Eq("ndarray:bool:[2]:False", api.describe_bools(new[] { true, false }));
            Eq("ndarray:float32:[2, 3]:False", api.describe_matrix(new float[2, 3]));
        });
        Check("sequences_accepted_back", () =>
        {
            SeqEq(new[] { 0.0, 0.5, 1.0 }, api.doubles_from_list(3));
            SeqEq(new double[0], api.doubles_from_list(0), "empty list");
            SeqEq(new[] { 1.5f, -2f, 3.25f }, api.floats_from_tuple());
            SeqEq(new short[] { 1, -2, 300 }, api.shorts_from_ndarray());
            SeqEq(new[] { true, false, false }, api.bools_from_list());
            SeqEq(new[] { "x", "", null, "ü" }, api.strings_from_tuple());
        });
        Check("string_array", () =>
        {
            SeqEq(new[] { "a", null, "", "日本語 🐍" }, api.echo_strings(new[] { "a", null, "", "日本語 🐍" }));
            Eq(null, api.echo_strings(null), "null");
            Eq("builtins.list:['a', None]", api.describe_strings(new[] { "a", null }));
        });
        Check("lists", () =>
        {
            SeqEq(new[] { "x", "y" }, api.echo_string_list(new List<string> { "x", "y" }));
            SeqEq(new[] { 1, int.MinValue }, api.echo_ro_list(new List<int> { 1, int.MinValue }.AsReadOnly()));
            SeqEq(new[] { 0.5, -1 }, api.echo_ilist(new[] { 0.5, -1 }));
            Eq(0, api.echo_string_list(new List<string>()).Count, "empty");
            Eq(null, api.echo_string_list(null), "null");
            Eq("builtins.list:[1, 2]", api.describe_list(new List<int> { 1, 2 }));
        });
        Check("dicts", () =>
        {
            var d = new Dictionary<string, double> { { "a", 1.5 }, { "ü", double.NaN }, { "", -0.0 } };
            var r = api.echo_dict(d);
            Eq(3, r.Count, "count");
            foreach (var kv in d) Eq(BitConverter.DoubleToInt64Bits(kv.Value), BitConverter.DoubleToInt64Bits(r[kv.Key]), kv.Key);
            var ro = api.echo_ro_dict(new Dictionary<string, string[]> { { "k", new[] { "v", null } }, { "n", null } });
            SeqEq(new[] { "v", null }, ro["k"], "k");
            Eq(null, ro["n"], "null value");
            SeqEq(new[] { "a", "b" }, api.dict_keys(new Dictionary<string, int> { { "b", 1 }, { "a", 2 } }));
            Eq("builtins.dict:{'k': 1}", api.describe_dict(new Dictionary<string, int> { { "k", 1 } }));
            var m = api.make_dict();
            SeqEq(new[] { 1.0, 2.0 }, m["a"], "list value");
            SeqEq(new[] { 3.0 }, m["b"], "ndarray value");
            Eq(null, m["c"], "None value");
            Eq(0, api.echo_dict(new Dictionary<string, double>()).Count, "empty");
            True(Throws<ResultMismatchException>(() => api.dict_with_int_key()).Message.Contains("not a str"), "int key");
            StillWorks();
        });
        Check("datetime", () =>
        {
            var utc = new DateTime(2024, 2, 29, 23, 59, 59, 999, DateTimeKind.Utc).AddTicks(1230);
            var back = api.echo_datetime(utc);
            Eq(utc, back);
            Eq(DateTimeKind.Utc, back.Kind, "Utc stays Utc");
            var naive = new DateTime(1999, 12, 31, 0, 0, 0, DateTimeKind.Unspecified);
            Eq(DateTimeKind.Unspecified, api.echo_datetime(naive).Kind, "Unspecified stays Unspecified");
            Eq(DateTime.MinValue, api.echo_datetime(DateTime.MinValue), "MinValue");
            Eq(DateTime.MaxValue.AddTicks(-9), api.echo_datetime(DateTime.MaxValue), "MaxValue loses the ticks below a microsecond");
            Eq(utc.AddTicks(-(utc.Ticks % 10)), api.echo_datetime(utc.AddTicks(7)), "sub-microsecond ticks are dropped");
            Eq("aware UTC 2024-02-29T23:59:59.999123+00:00", api.datetime_info(utc));
            Eq("naive 1999-12-31T00:00:00", api.datetime_info(naive));
            var local = new DateTime(2024, 6, 1, 12, 0, 0, DateTimeKind.Local);
            var fromLocal = api.echo_datetime(local);
            Eq(DateTimeKind.Utc, fromLocal.Kind, "Local is sent as UTC");
            Eq(local.ToUniversalTime(), fromLocal, "the same instant");
            var plus2 = api.aware_plus_two();
            Eq(new DateTime(2024, 6, 1, 12, 0, 0, 250, DateTimeKind.Utc), plus2, "an aware +02:00 datetime arrives as UTC");
            Eq(DateTimeKind.Utc, plus2.Kind, "kind");
            Eq(DateTimeKind.Unspecified, api.naive_datetime().Kind, "naive arrives Unspecified");
            Eq("builtins.NoneType:None", api.describe_nullable(null));
            True(api.describe_datetime(utc).StartsWith("datetime.datetime:datetime.datetime(2024, 2, 29, 23, 59, 59, 999123, tzinfo=datetime.timezone.utc)"), api.describe_datetime(utc));
            True(Throws<ResultMismatchException>(() => api.not_a_datetime()).Message.Contains("DateTime"), "names DateTime");
        });
        Check("timespan", () =>
        {
            foreach (var t in new[] { TimeSpan.Zero, TimeSpan.FromTicks(-10), TimeSpan.FromDays(-3.5), new TimeSpan(10675199, 2, 48, 5, 477) })
                Eq(t, api.echo_timespan(t));
            Eq(TimeSpan.FromTicks(TimeSpan.MaxValue.Ticks - 7), api.echo_timespan(TimeSpan.MaxValue), "MaxValue truncated to a microsecond");
            Eq(TimeSpan.FromTicks(TimeSpan.MinValue.Ticks + 8), api.echo_timespan(TimeSpan.MinValue), "MinValue truncated toward zero");
            Eq(-1.5, api.timespan_seconds(TimeSpan.FromSeconds(-1.5)));
            Eq(new TimeSpan(1, 2, 0, 0).Add(TimeSpan.FromTicks(30)), api.make_timespan());
            Eq("datetime.timedelta:datetime.timedelta(seconds=90)", api.describe_timespan(TimeSpan.FromSeconds(90)));
        });
        Check("guid", () =>
        {
            var g = new Guid("00112233-4455-6677-8899-aabbccddeeff");
            Eq(g, api.echo_guid(g));
            Eq(Guid.Empty, api.echo_guid(Guid.Empty));
            var n = Guid.NewGuid();
            Eq(n, api.echo_guid(n));
            Eq(n.ToString(), api.guid_text(n), "str(uuid) is Guid.ToString()");
            Eq(g, api.guid_from_text("00112233-4455-6677-8899-aabbccddeeff"));
            Eq("uuid.UUID:UUID('00112233-4455-6677-8899-aabbccddeeff')", api.describe_guid(g));
        });
        Check("enums", () =>
        {
            Eq(Color.Green, api.echo_color(Color.Green));
            Eq("Color.BLUE", api.color_name(Color.Blue), "an IntEnum when the hint names it");
            Eq("builtins.int:2", api.describe_color(Color.Green), "an int without a hint");
            Eq(Color.Blue, api.next_color(Color.Green));
            Eq((Color)99, api.bad_color(), "undefined values cross as they are");
            True(Throws<ArgumentMismatchException>(() => api.color_name((Color)3)).Message.Contains("not a member of Color"), "not a member");
            Eq(Level.High, api.echo_level(Level.High));
            StillWorks();
        });
        Check("small_integers", () =>
        {
            Eq(byte.MaxValue, api.echo_byte(byte.MaxValue));
            Eq(sbyte.MinValue, api.echo_sbyte(sbyte.MinValue));
            Eq(short.MinValue, api.echo_short(short.MinValue));
            Eq(ushort.MaxValue, api.echo_ushort(ushort.MaxValue));
            Eq(uint.MaxValue, api.echo_uint(uint.MaxValue));
            Eq(ulong.MaxValue, api.echo_ulong(ulong.MaxValue));
            True(Throws<ResultMismatchException>(() => api.byte_overflow(256)).Message.Contains("byte"), "256 is no byte");
            Eq((byte)255, api.byte_overflow(255));
        });
        Check("rectangular", () =>
        {
            var m = new double[,] { { 1, 2, 3 }, { 4, double.NaN, -0.0 } };
            var r = api.echo_matrix(m);
            Eq(2, r.GetLength(0)); Eq(3, r.GetLength(1));
            for (int i = 0; i < 2; i++) for (int j = 0; j < 3; j++) Eq(BitConverter.DoubleToInt64Bits(m[i, j]), BitConverter.DoubleToInt64Bits(r[i, j]), "m[" + i + "," + j + "]");
            var c = new int[2, 3, 4];
            for (int i = 0; i < 24; i++) c[i / 12, i / 4 % 3, i % 4] = i - 12;
            SeqEq(c.Cast<int>(), api.echo_cube(c).Cast<int>(), "cube");
            Eq(0, api.echo_matrix(new double[0, 5]).GetLength(0), "0x5");
            Eq(5, api.echo_matrix(new double[0, 5]).GetLength(1), "0x5");
            Eq(null, api.echo_matrix(null), "null");
            SeqEq(new[] { true, false, false, true }, api.echo_bool_matrix(new[,] { { true, false }, { false, true } }).Cast<bool>());
            var t = api.transpose(m);
            Eq(3, t.GetLength(0), "transposed rows");
            Eq(4.0, t[0, 1], "a non-contiguous result is made contiguous");
            Eq(3.0, t[2, 0]);
            var f = api.fortran_ndarray();
            SeqEq(new[] { 0.0, 1, 2, 3, 4, 5 }, f.Cast<double>(), "a Fortran-ordered result arrives in C order");
            SeqEq(new[] { 0, 3, 6, 9 }, api.strided_ndarray().ToArray<int>(), "strided NdArray");
            SeqEq(new long[] { 1, 2, 3, 4, 5, 6 }, api.matrix_from_lists().Cast<long>(), "nested lists become long[,]");
            True(Throws<ResultMismatchException>(() => api.wrong_rank()).Message.Contains("float[,,]"), "rank mismatch names the type");
            StillWorks();
        });
        Check("ndarrays_inside_a_list", () =>
        {
            List<NdArray> l = api.nd_list(3);
            SeqEq(new[] { 0f, 1f, 2f }, l[0].ToArray<float>());
            Eq(null, l[1], "None");
            Eq("NdArray(float64, [2, 2])", l[2].ToString());
            SeqEq(new[] { 1.0, 1, 1, 1 }, l[2].ToArray<double>());
        });
        Check("records", () =>
        {
            Point p = api.move(new Point { X = 1.5, Y = -2 }, 1);
            Eq(2.5, p.X); Eq(-2.0, p.Y);
            var s = new Shape
            {
                Name = "tri", Origin = new Point { X = 0, Y = 1 }, Samples = new[] { 0.5, 1.5 },
                Corners = new List<Point> { new Point { X = 1, Y = 2 } }, Color = Color.Green,
                Tags = new Dictionary<string, int> { { "k", 1 } },
            };
            Eq("Shape Point Point Color.GREEN ndarray:float64:False dict None", api.inspect_shape(s));
            Shape g = api.grow_shape(s);
            Eq("tri", g.Name);
            Eq(2, g.Corners.Count, "corners");
            Eq(1.0, g.Corners[1].X);
            SeqEq(new[] { 1.0, 3.0 }, g.Samples, "samples");
            Eq(Color.Green, g.Color);
            Eq(1, g.Tags["k"]);
            Eq(1.0, g.Parent.Y, "parent");
            Eq("SimpleNamespace(x, y)", api.untyped_record(new Point()), "without a hint: SimpleNamespace");
            Pair pair = api.make_pair();
            Eq("ada", pair.FirstName); Eq(36, pair.Score);
            var pts = api.echo_points(new List<Point> { new Point { X = 1 }, null });
            Eq(2, pts.Count); Eq(1.0, pts[0].X); Eq(null, pts[1], "null element");
            var px = new Pixel { R = 255, G = 0, B = 7 };
            Eq(px, api.echo_pixel(px));
            Eq(null, api.echo_nullable_pixel(null));
            Eq(px, api.echo_nullable_pixel(px));
            Eq(null, api.echo_point(null), "null record");
            Eq(3.0, api.echo_point(new Point { X = 3 }).X, "an untyped echo returns the SimpleNamespace, encoded by field");
            Immutable im = api.echo_immutable(new Immutable("é", new[] { 1.5, 2.5 }));
            Eq("é", im.Label); SeqEq(new[] { 1.5, 2.5 }, im.Values, "values"); Eq(2, im.Count, "count");
            Eq("SimpleNamespace(label, values)", api.untyped_immutable(new Immutable("x", null)), "constructor parameters are the fields");
            True(Throws<ResultMismatchException>(() => api.record_missing_field()).Message.Contains("no field 'y'"), "missing field");
            True(Throws<ResultMismatchException>(() => api.record_extra_field()).Message.Contains("z"), "extra field");
            var bad = new Shape { Name = "x", Origin = null, Samples = new double[0], Corners = new List<Point>(), Color = Color.Red };
            True(Throws<PythonException>(() => api.grow_shape(bad)).Message.Contains("NoneType"), "a null member arrives as None");
            StillWorks();
        });
    }

    static int Main(string[] args)
    {
        string folder = Path.GetFullPath(args[0]);
        Check("reject_missing_attribute", () => True(Throws<NotSupportedException>(() => LessPythonInvoke.Connect<INoAttribute>(folder)).Message.Contains("add_ints"), "names the method"));
        Check("reject_unsupported_type", () => True(Throws<NotSupportedException>(() => LessPythonInvoke.Connect<IBadType>(folder)).Message.Contains("returns decimal (use double"), "names the type"));
        Check("reject_unsupported_tuple_item", () =>
        {
            string m = Throws<NotSupportedException>(() => LessPythonInvoke.Connect<IBadTuple>(folder)).Message;
            True(m.Contains("(int, HashSet<int>) (its part HashSet<int>: use int[] or List<int>)"), m);
        });
        CheckUnsupported<IBadNullable>(folder, "returns decimal? (its part decimal: use double");
        CheckUnsupported<IBadDictKey>(folder, "Dictionary<int, string> (dictionary keys must be string");
        CheckUnsupported<IBadRecursive>(folder, "Node (as a record, it contains itself");
        CheckUnsupported<IBadRectStrings>(folder, "string[,] (rectangular arrays carry numbers and bool only");
        CheckUnsupported<IBadEnumerable>(folder, "IEnumerable<int> (use int[] or List<int>)");
        CheckUnsupported<IBadCollection>(folder, "MyList (use T[], List<T> or Dictionary<string, T>)");
        Check("connect_missing_folder", () => True(Throws<ServerUnavailableException>(() => LessPythonInvoke.Connect<ITypes>(folder + "_nothing_here")).Message.Contains("no lesspy server is serving"), "message"));
        Check("connect_missing_name", () =>
        {
            string old = Environment.GetEnvironmentVariable("JUPYTER_RUNTIME_DIR");
            Environment.SetEnvironmentVariable("JUPYTER_RUNTIME_DIR", "/tmp/lesspy_no_runtime_dir");
            var e = Throws<ServerUnavailableException>(() => LessPythonInvoke.Connect<ITypes>("no_such_session"));
            Environment.SetEnvironmentVariable("JUPYTER_RUNTIME_DIR", old);
            True(e.Message.Contains(Path.Combine("/tmp/lesspy_no_runtime_dir", "lesspy", "no_such_session")) && e.Message.Contains("--name no_such_session"), e.Message);
        });

        api = LessPythonInvoke.Connect<ITypes>(folder);
        var conn = (ILessPyConnection)api;
        api.add_ints(0, 0);                          // opens the first lane's files: their size is the starting capacity
        long capacity = new FileInfo(Directory.GetFiles(folder, "lane-*.req.mmf")[0]).Length;
        Check("connection_info", () =>
        {
            Eq(int.Parse(File.ReadAllText(Path.Combine(folder, "python.pid")).Trim()), conn.ServerPid, "ServerPid");
            Eq(folder, conn.WorkFolder, "WorkFolder");
            Eq(TimeSpan.FromSeconds(100), conn.CallTimeout, "default CallTimeout");
        });
        Check("add_ints", () => Eq(42, api.add_ints(2, 40)));
        Check("int", () => { foreach (int v in new[] { 0, 1, -1, int.MinValue, int.MaxValue }) Eq(v, api.echo_int(v)); });
        Check("long", () => { foreach (long v in new[] { 0L, -1L, long.MinValue, long.MaxValue, 1L << 40 }) Eq(v, api.echo_long(v)); });
        Check("float", () =>
        {
            foreach (float v in new[] { 0f, -0f, 1.5f, float.NaN, float.PositiveInfinity, float.NegativeInfinity, float.MaxValue, float.Epsilon })
                Eq(BitConverter.ToInt32(BitConverter.GetBytes(v), 0), BitConverter.ToInt32(BitConverter.GetBytes(api.echo_float(v)), 0), "bits of " + v);
        });
        Check("double", () =>
        {
            foreach (double v in new[] { 0.0, -0.0, Math.PI, double.NaN, double.PositiveInfinity, double.NegativeInfinity, double.MaxValue, double.Epsilon })
                Eq(BitConverter.DoubleToInt64Bits(v), BitConverter.DoubleToInt64Bits(api.echo_double(v)), "bits of " + v);
        });
        Check("bool", () => { Eq(true, api.echo_bool(true)); Eq(false, api.echo_bool(false)); });
        Check("string", () =>
        {
            foreach (string s in new[] { "", "hello", "héllo wörld ✓ 日本語 🐍", "nul\0inside", new string('x', 100000) }) Eq(s, api.echo_string(s));
            Eq(null, api.echo_string(null), "null string");
        });
        Check("bytes", () =>
        {
            var all = Enumerable.Range(0, 256).Select(i => (byte)i).ToArray();
            SeqEq(all, api.echo_bytes(all));
            SeqEq(new byte[0], api.echo_bytes(new byte[0]), "empty");
            Eq(null, api.echo_bytes(null), "null bytes");
        });
        Check("int_array", () =>
        {
            SeqEq(new[] { 1, 2, 3, int.MinValue, int.MaxValue }, api.echo_int_array(new[] { 1, 2, 3, int.MinValue, int.MaxValue }));
            SeqEq(new int[0], api.echo_int_array(new int[0]), "empty");
            SeqEq(new[] { 7 }, api.echo_int_array(new[] { 7 }), "one");
        });
        Check("jagged", () =>
        {
            var j = new[] { new[] { 1, 2 }, new int[0], new[] { 3 }, new int[0] };
            int[][] r = api.echo_jagged(j);
            Eq(4, r.Length, "rows");
            for (int i = 0; i < j.Length; i++) SeqEq(j[i], r[i], "row " + i);
            Eq(0, api.echo_jagged(new int[0][]).Length, "zero rows");
        });
        Check("tuple3", () => Eq((-5, 2.5, "ü🐍"), api.echo_tuple3((-5, 2.5, "ü🐍"))));
        Check("tuple3_null_string", () => Eq((1, 0.5, (string)null), api.echo_tuple3((1, 0.5, null))));
        Check("nested_tuple", () => Eq(((1, (long.MaxValue, true)), "n"), api.echo_nested(((1, (long.MaxValue, true)), "n"))));
        Check("tuple_from_list", () => Eq((7, 2.5, "seven"), api.make_tuple_from_list()));
        Check("void", () => api.returns_none());
        Check("coerce_int_to_long", () => Eq(3L * (1L << 33), api.int_to_long(3)));
        Check("coerce_numpy_scalar", () => Eq(1.25, api.np_scalar()));
        Check("coerce_list_to_int_array", () => { SeqEq(new[] { 0, 1, 2, 3 }, api.list_to_int_array(4)); SeqEq(new int[0], api.list_to_int_array(0), "empty"); });

        TypeChecks();

        EchoNd("float32", new[] { 1.5f, -0f, float.NaN, float.PositiveInfinity, 3f, 4f }, 2, 3);
        EchoNd("float64", new[] { Math.PI, double.NegativeInfinity, -0.0 }, 3);
        EchoNd("int32", new[] { int.MinValue, 0, int.MaxValue, 5 }, 2, 2);
        EchoNd("int64", new[] { long.MinValue, long.MaxValue }, 2, 1);
        EchoNd("uint8_3d", Enumerable.Range(0, 24).Select(i => (byte)i).ToArray(), 2, 3, 4);
        EchoNd("bool", new[] { true, false, true }, 3);
        EchoNd("int16", new short[] { -3, 300 }, 2);
        EchoNd("uint64", new[] { ulong.MaxValue, 0UL }, 2);
        EchoNd("empty_0x3", new float[0], 0, 3);
        Check("ndarray_0d", () =>
        {
            NdArray r = api.echo_ndarray(NdArray.Scalar(2.5));
            Eq(0, r.Shape.Length, "rank");
            Eq(1, r.Length, "length");
            Eq(2.5, r.AsSpan<double>()[0]);
        });
        Check("ndarray_null", () => Eq(null, api.echo_ndarray(null)));
        Check("inc_ndarray", () =>
        {
            var data = Enumerable.Range(0, 4096).Select(i => (float)i).ToArray();
            NdArray r = api.inc_ndarray(NdArray.FromArray(data, 64, 64));
            SeqEq(data.Select(x => x + 1), r.ToArray<float>());
            NdArray r2 = api.inc_ndarray(r);           // a result view passed as the next argument is copied before it dies
            SeqEq(data.Select(x => x + 2), r2.ToArray<float>(), "view as argument");
            var t = api.inc_ndarray_timed(r2);
            Eq(data[5] + 3, t.Item1.AsSpan<float>()[5]);
            True(t.Item2 >= 0, "timing");
        });
        Check("stale_view", () =>
        {
            NdArray r = api.echo_ndarray(NdArray.FromArray(new[] { 1f, 2f }));
            byte[] kept = r.Data;
            StillWorks();
            True(Throws<InvalidOperationException>(() => r.AsSpan<float>()).Message.Contains("next call"), "message");
            Throws<InvalidOperationException>(() => { var x = r.DataMemory.Span; });
            Throws<InvalidOperationException>(() => r.ToArray<float>());
            SeqEq(new byte[] { 0, 0, 0x80, 0x3f, 0, 0, 0, 0x40 }, kept, "the copy survives");
        });
        Check("view_wrong_element_type", () =>
        {
            NdArray r = api.echo_ndarray(NdArray.FromArray(new[] { 1f, 2f }));
            Throws<InvalidOperationException>(() => r.AsSpan<double>());
            Throws<InvalidOperationException>(() => r.AsSpan<int>());
        });

        Check("error_unknown_function", () => { Eq("no_such_function", Throws<FunctionNotFoundException>(() => api.missing()).FunctionName); StillWorks(); });
        Check("error_private_function", () => { Throws<FunctionNotFoundException>(() => api.private_function()); StillWorks(); });
        Check("error_not_callable", () => { Throws<FunctionNotFoundException>(() => api.not_callable()); StillWorks(); });
        Check("error_argument_count", () => { Throws<ArgumentMismatchException>(() => api.add_ints_one_arg(1)); StillWorks(); });
        Check("error_python_exception", () =>
        {
            var e = Throws<PythonException>(() => api.raises("bad value ü"));
            Eq("ValueError", e.PythonType, "PythonType");
            Eq("bad value ü", e.Message, "Message (the type is PythonType)");
            True(e.PythonTraceback.Contains("raises") && e.PythonTraceback.Contains("types_module.py"), "traceback: " + e.PythonTraceback);
            True(e.ToString().Contains("types_module.py"), "ToString has the traceback");
            StillWorks();
        });
        Check("error_overflow", () => { Throws<ResultMismatchException>(() => api.overflow()); StillWorks(); });
        Check("error_bad_void", () => { Throws<ResultMismatchException>(() => api.bad_void()); StillWorks(); });
        Check("error_wrong_type", () => { Throws<ResultMismatchException>(() => api.wrong_type()); StillWorks(); });
        Check("request_grows", () =>
        {
            // protocol v2: mappings grow on demand, so a request larger than the starting capacity is carried
            Eq(capacity, api.echo_bytes(new byte[capacity]).Length);
            StillWorks();
        });
        Check("result_grows", () => { Eq((int)capacity, api.big_result((int)capacity).Length); StillWorks(); });
        Check("big_result_fits", () => Eq((int)capacity - 64 - 5, api.big_result((int)capacity - 64 - 5).Length));
        Check("timeout_then_late_reply_dropped", () =>
        {
            conn.CallTimeout = TimeSpan.FromMilliseconds(300);
            var e = Throws<CallTimeoutException>(() => api.sleep_then(1.0, 7));
            True(e.Message.Contains("sleep_then"), "names the function: " + e.Message);
            conn.CallTimeout = TimeSpan.FromSeconds(10);
            StillWorks();
        });
        Check("timeout_next_call_at_once", () =>
        {
            // protocol v2: the abandoned call's lane is set aside and the next call goes out on another lane
            conn.CallTimeout = TimeSpan.FromMilliseconds(200);
            Throws<CallTimeoutException>(() => api.sleep_then(1.5, 7));
            Eq(2, api.add_ints(1, 1));
            conn.CallTimeout = TimeSpan.FromSeconds(10);
            StillWorks();
            Eq(9, api.sleep_then(0.01, 9));
        });
        Check("second_client_connects", () =>
        {
            // protocol v2: several clients share one server (up to --max-clients)
            var other = LessPythonInvoke.Connect<ITypes>(folder);
            Eq(5, other.add_ints(2, 3));
            ((IDisposable)other).Dispose();
            StillWorks();
        });
        Check("dispose", () =>
        {
            ((IDisposable)api).Dispose();
            ((IDisposable)api).Dispose();
            Throws<ObjectDisposedException>(() => api.add_ints(1, 2));
        });
        Console.WriteLine(failures == 0 ? "ALL CHECKS PASSED" : failures + " CHECKS FAILED");
        return failures == 0 ? 0 : 1;
    }
}
