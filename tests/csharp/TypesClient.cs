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
}

public interface INoAttribute { int add_ints(int a, int b); }
public interface IBadType { [PythonImport] decimal add_ints(decimal a, int b); }
public interface IBadTuple { [PythonImport] (int, List<int>) f(); }

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

    static int Main(string[] args)
    {
        string folder = Path.GetFullPath(args[0]);
        Check("reject_missing_attribute", () => True(Throws<NotSupportedException>(() => LessPythonInvoke.Connect<INoAttribute>(folder)).Message.Contains("add_ints"), "names the method"));
        Check("reject_unsupported_type", () => True(Throws<NotSupportedException>(() => LessPythonInvoke.Connect<IBadType>(folder)).Message.Contains("Decimal"), "names the type"));
        Check("reject_unsupported_tuple_item", () => True(Throws<NotSupportedException>(() => LessPythonInvoke.Connect<IBadTuple>(folder)).Message.Contains("List"), "names the type"));
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
            True(e.Message.StartsWith("ValueError: ") && e.Message.Contains("bad value ü"), "Message: " + e.Message);
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
