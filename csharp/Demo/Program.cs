// LessPyDemo: the original LessPythonInvoke README's example.
//   mono LessPyDemo.exe [path/to/exporting_module.py] [--keep-alive] [--debug]
// The Python interpreter is python3/python on PATH, or the venv in $LESSPY_PYTHON_VENV.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using LessPy;

public interface IMyPyApi
{
    [PythonImport] int add_ints(int a, int b);
    [PythonImport] NdArray inc_ndarray(NdArray nd);
    [PythonImport("inc_ndarray_timed")] (NdArray, double) inc_ndarray_timed(NdArray nd);
    [PythonImport] string greet(string name);
    [PythonImport] (int count, double mean, string dtype) describe(NdArray nd);
}

static class Program
{
    static int Main(string[] args)
    {
        string module = null;
        bool keepAlive = false, debug = false;
        foreach (string a in args)
        {
            if (a == "--keep-alive") keepAlive = true;
            else if (a == "--debug") debug = true;
            else module = a;
        }
        if (module == null) module = Path.Combine(AppDomain.CurrentDomain.BaseDirectory, "exporting_module.py");
        string venv = Environment.GetEnvironmentVariable("LESSPY_PYTHON_VENV") ?? "";

        var sw = Stopwatch.StartNew();
        var api = LessPythonInvoke.Initialize<IMyPyApi>(venv, module, debug: debug, keepAlive: keepAlive, capacity: 256 * 1024 * 1024);
        var conn = (ILessPyConnection)api;
        Console.WriteLine("connected to pid " + conn.ServerPid + " serving " + conn.WorkFolder + " in " + sw.ElapsedMilliseconds + " ms");
        try
        {
            Console.WriteLine("add_ints(2, 40) = " + api.add_ints(2, 40));
            Console.WriteLine("greet(\"C#\") = " + api.greet("C#"));
            var small_times = new List<double>();
            for (int k = 0; k < 2000; k++)
            {
                var t = Stopwatch.StartNew();
                api.add_ints(k, 1);
                small_times.Add(t.Elapsed.TotalMilliseconds * 1000);
            }
            small_times.Sort();
            Console.WriteLine("add_ints round trip: median " + small_times[small_times.Count / 2].ToString("0.0") + " us over " + small_times.Count + " calls");

            var small = NdArray.FromArray(new float[] { 1, 2, 3, 4, 5, 6 }, 2, 3);
            NdArray inc = api.inc_ndarray(small);
            Console.WriteLine("inc_ndarray(" + small + ") = " + inc + " [" + string.Join(", ", inc.ToArray<float>()) + "]");
            var d = api.describe(small);
            Console.WriteLine("describe(...) = (count " + d.count + ", mean " + d.mean + ", dtype " + d.dtype + ")");

            const int N = 4096;
            var data = new float[N * N];
            for (int i = 0; i < data.Length; i++) data[i] = i % 1000;
            var big = NdArray.FromArray(data, N, N);
            var times = new List<double>();
            bool ok = true;
            for (int k = 0; k < 11; k++)
            {
                var t = Stopwatch.StartNew();
                NdArray r = api.inc_ndarray(big);
                t.Stop();
                if (k > 0) times.Add(t.Elapsed.TotalMilliseconds);     // the first call maps fresh pages: not counted
                ReadOnlySpan<float> s = r.AsSpan<float>();
                foreach (int i in new[] { 0, 1, 999, 1000, N * N / 2 + 7, N * N - 1 })
                    if (s[i] != data[i] + 1) ok = false;
            }
            times.Sort();
            Console.WriteLine("inc_ndarray(" + big + "): elements " + (ok ? "ok" : "WRONG") + ", round trip median "
                + times[times.Count / 2].ToString("0.00") + " ms over " + times.Count + " calls");

            // the same nd + 1, timed by Python around that line only; its result sits inside a tuple, so it is a
            // fresh heap array whose new pages fault in (inc_ndarray's result is computed in the reply mapping)
            var timed = api.inc_ndarray_timed(big);
            Console.WriteLine("inc_ndarray_timed(...) = (" + timed.Item1 + ", " + timed.Item2.ToString("0.00")
                + " ms for nd + 1 alone into a fresh array, timed in Python; one call)");
            return ok ? 0 : 1;
        }
        finally
        {
            ((IDisposable)api).Dispose();
        }
    }
}
