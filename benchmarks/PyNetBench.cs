// PyNetBench.exe: the pythonnet peer, embedded in a Mono program the way its users do it: reference
// Python.Runtime.dll (from the pythonnet wheel), point Runtime.PythonDLL at libpython, PythonEngine.Initialize(),
// take the GIL and call the module's functions. Calls the same benchmarks/bench_module.py as Bench.exe.
//
//   mono PyNetBench.exe <libpython.so> <bench dir> [small=N] [big=N] [n=4096]
// (PYTHONPATH must hold numpy's site-packages.) Prints RESULT/VALUE/INFO lines like Bench.exe.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;
using Python.Runtime;
using static Measure;

static class PyNetBench
{

    static int Main(string[] args)
    {
        if (args.Length < 2) { Console.Error.WriteLine("usage: mono PyNetBench.exe <libpython.so> <bench dir> [small=N] [big=N] [n=N]"); return 2; }
        int small = 20000, bigCalls = 10, n = 4096;
        for (int i = 2; i < args.Length; i++)
        {
            string[] kv = args[i].Split('=');
            int v = int.Parse(kv[1], Inv);
            if (kv[0] == "small") small = v; else if (kv[0] == "big") bigCalls = v; else if (kv[0] == "n") n = v;
        }
        long t0 = Stopwatch.GetTimestamp();
        Runtime.PythonDLL = args[0];
        PythonEngine.Initialize();
        bool ok = true;
        using (Py.GIL())
        {
            dynamic sys = Py.Import("sys");
            sys.path.insert(0, args[1]);
            PyObject mod = Py.Import("bench_module");
            PyObject np = Py.Import("numpy");
            Console.WriteLine("VALUE pythonnet_init " + F(Us(t0)) + " us");
            Console.WriteLine("INFO python " + sys.version.ToString().Split(' ')[0] + " numpy " + np.GetAttr("__version__"));

            // ---- small calls: noop() and add_ints(2, 40), arguments converted from .NET ints each call
            PyObject noop = mod.GetAttr("noop"), addInts = mod.GetAttr("add_ints");
            for (int i = 0; i < 2000; i++) { noop.Invoke(); using (var r = addInts.Invoke(new PyInt(2), new PyInt(40))) r.As<int>(); }
            var tn = new List<double>(small);
            var ta = new List<double>(small);
            for (int i = 0; i < small; i++)
            {
                long s = Stopwatch.GetTimestamp();
                noop.Invoke().Dispose();
                tn.Add(Us(s));
                s = Stopwatch.GetTimestamp();
                int r;
                using (var a = new PyInt(2))
                using (var b = new PyInt(40))
                using (var res = addInts.Invoke(a, b))
                    r = res.As<int>();
                ta.Add(Us(s));
                if (r != 42) { Console.Error.WriteLine("CHECK FAILED: pythonnet add_ints"); ok = false; break; }
            }
            Report("pythonnet_noop", tn);
            Report("pythonnet_add_ints", ta);

            // ---- 4096x4096 float32 +1 the usual way: a numpy array built from the .NET array (one copy in through
            // its data pointer), the call, and the result copied back into a new .NET array.
            PyObject inc = mod.GetAttr("inc_ndarray");
            var src = new float[n * n];
            for (int i = 0; i < src.Length; i++) src[i] = i % 1000;
            var tb = new List<double>(bigCalls);
            float[] last = null;
            for (int i = -2; i < bigCalls; i++)
            {
                long s = Stopwatch.GetTimestamp();
                float[] outArr;
                using (var shape = new PyTuple(new PyObject[] { new PyInt(n), new PyInt(n) }))
                using (var arr = np.InvokeMethod("empty", shape, new PyString("float32")))
                {
                    Marshal.Copy(src, 0, DataPointer(arr), src.Length);
                    using (var res = inc.Invoke(arr))
                    {
                        outArr = new float[src.Length];
                        Marshal.Copy(DataPointer(res), outArr, 0, outArr.Length);
                    }
                }
                if (i >= 0) tb.Add(Us(s));
                last = outArr;
            }
            for (int i = 0; i < src.Length; i += 4099)
                if (last[i] != src[i] + 1) { Console.Error.WriteLine("CHECK FAILED: pythonnet inc element " + i); ok = false; break; }
            Report("pythonnet_big", tb);
        }
        PythonEngine.Shutdown();
        return ok ? 0 : 1;
    }

    static IntPtr DataPointer(PyObject arr)
    {
        using (PyObject ai = arr.GetAttr("__array_interface__"))
        using (PyObject data = ai.GetItem("data"))
        using (PyObject p = data.GetItem(0))
            return new IntPtr(p.As<long>());
    }
}
