// Calls tests/csharp/stub_client_api.py through the client `lesspy stub --client` generated (compiled beside this
// file as StubApi.cs), under the JIT or Mono's full-AOT mode (tests/test_stub_client.py).
//   mono StubClientProgram.exe PYTHON MODULE client   every call kind through the generated class
//   mono StubClientProgram.exe PYTHON MODULE proxy    an interface without a generated client (a DispatchProxy)
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading;
using System.Threading.Tasks;
using LessPy;

public interface IPlain : IDisposable
{
    [PythonImport("add_ints")] long AddInts(long a, long b);
}

public static class StubClientProgram
{
    static void Check(string name, bool ok, string detail = "")
    {
        Console.WriteLine("CHECK " + name + " " + (ok ? "ok" : "FAILED " + detail));
    }

    public static int Main(string[] args)
    {
        if (args[2] == "proxy")
        {
            try
            {
                using (var plain = LessPythonInvoke.Initialize<IPlain>(args[0], args[1]))
                    Check("proxy", plain.AddInts(1, 2) == 3);
            }
            catch (Exception e)
            {
                Console.WriteLine("ERROR " + e.GetType().FullName + ": " + e.Message);
            }
            return 0;
        }
        var api = LessPythonInvoke.Initialize<IStubApi>(args[0], args[1]);
        Check("generated", api.GetType() == typeof(StubApi), api.GetType().FullName);
        Check("ints", api.AddInts(40) == 42 && api.AddInts(1, 5) == 6);
        Check("floats", api.Scale(1.5, 4.0) == 6.0);
        Check("strings", api.Greet("ünï") == "hello ünï");
        Check("list", api.Total(new List<long> { 1, 2, 3, 4 }) == 10);
        var w = api.Weights(new List<string> { "ab", "cde" });
        Check("dict", w.Count == 2 && w["ab"] == 2.0 && w["cde"] == 3.0);
        Check("nullable", api.Maybe(true) == 7 && api.Maybe(false) == null);
        double[] d = api.Doubled(NdArray.FromArray(new double[] { 1, 2, 3 })).ToArray<double>();
        Check("ndarray", d.Length == 3 && d[0] == 2 && d[2] == 6, string.Join(",", d));
        var m = api.Midpoint(new Point { X = 0, Y = 2, Label = "a" }, new Point { X = 4, Y = 6, Label = "b" });
        Check("record", m.X == 2 && m.Y == 4 && m.Label == "ab");
        var ex = api.Extremes(new List<double> { 3, -1, 2 });
        Check("tuple", ex.Item1 == -1 && ex.Item2 == 3);
        var far = api.Farthest(new List<Point> { new Point { X = 1, Y = 1, Label = "n" }, new Point { X = 3, Y = 4, Label = "f" } }).Result;
        Check("task_record", far.Label == "f");
        Check("stream", string.Join(",", api.Count(5)) == "0,1,4,9,16", string.Join(",", api.Count(5)));
        api.Nothing(1);
        Check("void", true);
        Check("task", api.SlowSquare(9).Result == 81);
        var tasks = Enumerable.Range(0, 8).Select(i => api.SlowSquare(i)).ToArray();
        Task.WaitAll(tasks);
        Check("tasks", tasks.Select(t => t.Result).SequenceEqual(Enumerable.Range(0, 8).Select(i => (long)(i * i))));
        using (var cts = new CancellationTokenSource(300))
        {
            try
            {
                api.WaitForever(1, cts.Token).Wait();
                Check("cancel", false, "not cancelled");
            }
            catch (AggregateException e)
            {
                Check("cancel", e.InnerException is OperationCanceledException, e.InnerException.GetType().Name);
            }
        }
        try
        {
            api.Fail("boom");
            Check("error", false, "no exception");
        }
        catch (PythonException e)
        {
            Check("error", e.Message.Contains("boom"), e.Message);
        }
        var conn = (ILessPyConnection)api;
        NdArray inPlace = conn.NewRequestArray<double>(3);
        var span = inPlace.AsWritableSpan<double>();
        span[0] = 1; span[1] = 2; span[2] = 4;
        double[] twice = api.Doubled(inPlace).ToArray<double>();
        Check("in_place", twice.Length == 3 && twice[2] == 8, string.Join(",", twice));
        Check("connection", conn.ServerPid > 0 && conn.WorkFolder.Length > 0);
        conn.Dispose();
        try
        {
            api.AddInts(1);
            Check("disposed", false, "no exception");
        }
        catch (ObjectDisposedException)
        {
            Check("disposed", true);
        }
        return 0;
    }
}
