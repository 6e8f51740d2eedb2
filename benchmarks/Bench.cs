// Bench.exe: lesspy calls and the C#-side floors, measured in the same process and the same run.
// Built and run by benchmarks/run.py (MONO_PATH = csharp/bin). Uses the public LessPy API only, plus reflection for
// APIs that may not exist yet in the library it is built against (NewRequestArray<T>).
//
//   mono Bench.exe headless key=value...   floors (TCP, Unix socket, spin word, copies) and the headless calls
//   mono Bench.exe live folder=F small=N   no-op calls into a live notebook kernel's server
//   mono Bench.exe connect folder=F        Connect + first call from a fresh process
//   mono Bench.exe spin spinmmf=M spinsock=S small=N   the spin floor alone (run.py pins it to its own CPU)
//   mono Bench.exe small folder=F small=N prefix=P      no-op and add_ints calls alone (run.py pins both sides)
//   mono Bench.exe cold venv=V module=M    cold Initialize to first result, then `python -c "import numpy"`
//
// Prints lines for run.py; never judges the numbers:
//   RESULT name median_us p90_us p99_us n      a distribution of times
//   VALUE name number unit                     a single figure (throughput, bytes, CPU seconds)
//   SKIP name reason                           a case that could not run here, and why
//   INFO text
// Floors and calls are measured in alternating blocks so that drift on a noisy VM hits both alike.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Net;
using System.Net.Sockets;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Threading;
using LessPy;
using static Measure;

public interface IBench
{
    [PythonImport] void noop();
    [PythonImport] int add_ints(int a, int b);
    [PythonImport] NdArray inc_ndarray(NdArray a);
    [PythonImport] NdArray inc_into_result(NdArray a);
    [PythonImport] NdArray echo(NdArray a);
    [PythonImport] double add_floor_us(NdArray a);
}

static unsafe class Bench
{
    const int N = 4096;                          // the 4096x4096 float32 calls
    const int EchoCount = 1 << 17;               // 131072 float64 = 1 MiB
    const long EchoBytes = EchoCount * 8L;

    static Dictionary<string, string> Opt = new Dictionary<string, string>();

    static int Main(string[] args)
    {
        if (args.Length < 1)
        {
            Console.Error.WriteLine("usage: mono Bench.exe headless|live|cold key=value...");
            return 2;
        }
        for (int i = 1; i < args.Length; i++)
        {
            int eq = args[i].IndexOf('=');
            if (eq <= 0) { Console.Error.WriteLine("bad option " + args[i] + " (expected key=value)"); return 2; }
            Opt[args[i].Substring(0, eq)] = args[i].Substring(eq + 1);
        }
        try
        {
            if (args[0] == "headless") return Headless();
            if (args[0] == "live") return Live();
            if (args[0] == "cold") return Cold();
            if (args[0] == "connect") return ConnectOnce();
            if (args[0] == "spin") return SpinOnly();
            if (args[0] == "small") return SmallOnly();
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("Bench.exe " + args[0] + " failed: " + e);
            return 1;
        }
        Console.Error.WriteLine("unknown mode " + args[0]);
        return 2;
    }

    static string S(string key) { string v; if (!Opt.TryGetValue(key, out v)) throw new ArgumentException("missing option " + key + "="); return v; }
    static int I(string key, int dflt) { string v; return Opt.TryGetValue(key, out v) ? int.Parse(v, Inv) : dflt; }
    static double D(string key, double dflt) { string v; return Opt.TryGetValue(key, out v) ? double.Parse(v, Inv) : dflt; }

    // ------------------------------------------------------------------ headless

    static int Headless()
    {
        string folder = S("folder");
        string scratch = S("scratch");
        int smallCalls = I("small", 20000), bigCalls = I("big", 15), echoCalls = I("echo", 300);
        int rssCalls = I("rss", 100000), serverPid = 0;
        double idleS = D("idle", 10), threadS = D("threads_s", 2);
        int n = I("n", N);
        long bigBytes = (long)n * n * 4;
        bool haveResultArray = I("result_array", 0) == 1;
        bool ok = true;

        // ---- Connect + first call again on fresh proxies in this warmed-up process (the cold figure, from a fresh
        // process, is `Bench.exe connect`)
        var connect = new List<double>();
        for (int i = 0; i < I("connects", 5); i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            IBench c = LessPythonInvoke.Connect<IBench>(folder);
            c.noop();
            connect.Add(Us(t0));
            ((IDisposable)c).Dispose();
        }
        Report("connect_warm", connect);

        // ---- floor resources, created once and reused (first writes into a fresh mapping are slow)
        string copyPath = Path.Combine(scratch, "cs_copy.mmf");
        var bigSrc = new float[n * n];
        for (int i = 0; i < bigSrc.Length; i++) bigSrc[i] = i % 1000;
        var echoSrc = new double[EchoCount];
        for (int i = 0; i < echoSrc.Length; i++) echoSrc[i] = i * 0.5;
        GCHandle bigPin = GCHandle.Alloc(bigSrc, GCHandleType.Pinned);
        GCHandle echoPin = GCHandle.Alloc(echoSrc, GCHandleType.Pinned);
        byte* bigSrcP = (byte*)bigPin.AddrOfPinnedObject();
        byte* echoSrcP = (byte*)echoPin.AddrOfPinnedObject();
        MemoryMappedFile mmf = MemoryMappedFile.CreateFromFile(copyPath, FileMode.Create, null, bigBytes, MemoryMappedFileAccess.ReadWrite);
        MemoryMappedViewAccessor view = mmf.CreateViewAccessor(0, bigBytes, MemoryMappedFileAccess.ReadWrite);
        byte* acquired = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref acquired);
        byte* dst = acquired + view.PointerOffset;

        var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        tcp.NoDelay = true;
        tcp.Connect(new IPEndPoint(IPAddress.Loopback, I("tcp", 0)));
        var unix = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        unix.Connect(new UnixDomainSocketEndPoint(S("unix")));
        var spin = new SpinPeer(S("spinmmf"), S("spinsock"));
        var one = new byte[1];

        IBench api = LessPythonInvoke.Connect<IBench>(folder);
        var conn = (ILessPyConnection)api;
        serverPid = conn.ServerPid;
        Console.WriteLine("INFO connected to lesspy server pid " + serverPid + " at " + conn.WorkFolder);
        Console.WriteLine("PIDS " + Process.GetCurrentProcess().Id + " " + serverPid);
        try
        {
            // ---- (a) small calls vs the one-byte round trips and the spin word, in alternating blocks
            api.noop();
            if (api.add_ints(2, 40) != 42) { Console.Error.WriteLine("CHECK FAILED: add_ints(2, 40) != 42"); ok = false; }
            for (int i = 0; i < 2000; i++) { RoundTrip(tcp, one); RoundTrip(unix, one); spin.RoundTrip(); api.noop(); api.add_ints(2, 40); }
            var rttTcp = new List<double>(smallCalls);
            var rttUnix = new List<double>(smallCalls);
            var rttSpin = new List<double>(smallCalls);
            var noop = new List<double>(smallCalls);
            var small = new List<double>(smallCalls);
            const int Blocks = 10;
            int perBlock = Math.Max(1, smallCalls / Blocks);
            Console.WriteLine("PHASE small");
            for (int b = 0; b < Blocks; b++)
            {
                for (int i = 0; i < perBlock; i++) { long t0 = Stopwatch.GetTimestamp(); RoundTrip(tcp, one); rttTcp.Add(Us(t0)); }
                for (int i = 0; i < perBlock; i++) { long t0 = Stopwatch.GetTimestamp(); RoundTrip(unix, one); rttUnix.Add(Us(t0)); }
                for (int i = 0; i < perBlock; i++) { long t0 = Stopwatch.GetTimestamp(); spin.RoundTrip(); rttSpin.Add(Us(t0)); }
                for (int i = 0; i < perBlock; i++) { long t0 = Stopwatch.GetTimestamp(); api.noop(); noop.Add(Us(t0)); }
                for (int i = 0; i < perBlock; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    int r = api.add_ints(2, 40);
                    small.Add(Us(t0));
                    if (r != 42) { Console.Error.WriteLine("CHECK FAILED: add_ints(2, 40) returned " + r); ok = false; }
                }
            }
            Console.WriteLine("PHASE end");
            Report("floor_rtt_tcp", rttTcp);
            Report("floor_rtt_unix", rttUnix);
            Report("floor_spin_unpinned", rttSpin);
            Report("noop", noop);
            Report("add_ints", small);

            // ---- (b) 4096x4096 float32 `a + 1`: natural, into the result buffer, and in place in the request
            var big = NdArray.FromArray(bigSrc, n, n);
            for (int i = 0; i < 3; i++) Buffer.MemoryCopy(bigSrcP, dst, bigBytes, bigBytes);   // fault the view in
            for (int i = 0; i < 2; i++) ok &= CheckInc("inc_ndarray", api.inc_ndarray(big), bigSrc);
            var copy64 = new List<double>(bigCalls);
            var bigT = new List<double>(bigCalls);
            var bigR = new List<double>(bigCalls);
            var addInServer = new List<double>(bigCalls);
            if (haveResultArray)
            {
                try { for (int i = 0; i < 2; i++) ok &= CheckInc("inc_into_result", api.inc_into_result(big), bigSrc); }
                catch (LessPyException e)
                {
                    Console.WriteLine("SKIP big_result_array the call failed: " + OneLine(e.Message));
                    haveResultArray = false;
                }
            }
            for (int i = 0; i < bigCalls; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                Buffer.MemoryCopy(bigSrcP, dst, bigBytes, bigBytes);
                copy64.Add(Us(t0));
                t0 = Stopwatch.GetTimestamp();
                NdArray r = api.inc_ndarray(big);
                bigT.Add(Us(t0));
                if (i == bigCalls - 1) ok &= CheckInc("inc_ndarray", r, bigSrc);
                if (haveResultArray)
                {
                    t0 = Stopwatch.GetTimestamp();
                    r = api.inc_into_result(big);
                    bigR.Add(Us(t0));
                    if (i == bigCalls - 1) ok &= CheckInc("inc_into_result", r, bigSrc);
                    addInServer.Add(api.add_floor_us(big));
                }
            }
            Report("floor_cs_copy_64MiB", copy64);
            if (addInServer.Count > 0) Report("floor_py_add_in_server", addInServer);
            Report("big_natural", bigT);
            if (haveResultArray) Report("big_result_array", bigR);
            else if (I("result_array", 0) == 0) Console.WriteLine("SKIP big_result_array lesspy_kernel.result_array does not exist in this lesspy");
            ok &= InPlace(api, conn, bigSrc, n, bigCalls, haveResultArray);

            // ---- (c) 1 MiB float64 echo vs one C# copy of 1 MiB into a mapping
            var e1 = NdArray.FromArray(echoSrc, EchoCount);
            for (int i = 0; i < 50; i++) { Buffer.MemoryCopy(echoSrcP, dst, EchoBytes, EchoBytes); api.echo(e1); }
            ok &= CheckEcho(api.echo(e1), echoSrc);
            var copy1 = new List<double>(echoCalls);
            var echoT = new List<double>(echoCalls);
            for (int i = 0; i < echoCalls; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                Buffer.MemoryCopy(echoSrcP, dst, EchoBytes, EchoBytes);
                copy1.Add(Us(t0));
                t0 = Stopwatch.GetTimestamp();
                api.echo(e1);
                echoT.Add(Us(t0));
            }
            Report("floor_cs_copy_1MiB", copy1);
            Report("echo_1MiB", echoT);

            // ---- (d) throughput: one thread, then 8 threads, of small calls on this one proxy
            double one1 = Throughput(api, 1, threadS, ref ok);
            double eight = Throughput(api, 8, threadS, ref ok);
            Console.WriteLine("VALUE threads_1_calls_per_s " + F(one1) + " calls/s");
            Console.WriteLine("VALUE threads_8_calls_per_s " + F(eight) + " calls/s");

            // ---- (e) memory: RSS of both processes before and after many small calls (after a full GC here)
            for (int i = 0; i < 5000; i++) api.add_ints(i, 1);
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            long csBefore = RssKb("self"), pyBefore = RssKb(serverPid.ToString(Inv));
            Console.WriteLine("VALUE rss_cs_before " + csBefore + " KiB");
            Console.WriteLine("VALUE rss_py_before " + pyBefore + " KiB");
            long t1 = Stopwatch.GetTimestamp();
            for (int i = 0; i < rssCalls; i++)
                if (api.add_ints(i, 1) != i + 1) { Console.Error.WriteLine("CHECK FAILED: add_ints(" + i + ", 1)"); ok = false; break; }
            double rssSecs = (Stopwatch.GetTimestamp() - t1) / (double)Stopwatch.Frequency;
            GC.Collect(); GC.WaitForPendingFinalizers(); GC.Collect();
            long csAfter = RssKb("self"), pyAfter = RssKb(serverPid.ToString(Inv));
            Console.WriteLine("VALUE rss_calls " + rssCalls + " calls");
            Console.WriteLine("VALUE rss_calls_seconds " + F(rssSecs) + " s");
            Console.WriteLine("VALUE rss_growth_cs " + (csAfter - csBefore) + " KiB");
            Console.WriteLine("VALUE rss_growth_py " + (pyAfter - pyBefore) + " KiB");
            Console.WriteLine("VALUE rss_cs_after " + csAfter + " KiB");
            Console.WriteLine("VALUE rss_py_after " + pyAfter + " KiB");

            // ---- (f) idle CPU of both processes while the connection stays open and nobody calls
            int clk = I("clk", 100);
            long csT0 = CpuTicks("self"), pyT0 = CpuTicks(serverPid.ToString(Inv));
            long w0 = Stopwatch.GetTimestamp();
            Thread.Sleep(TimeSpan.FromSeconds(idleS));
            double wall = (Stopwatch.GetTimestamp() - w0) / (double)Stopwatch.Frequency;
            long csT1 = CpuTicks("self"), pyT1 = CpuTicks(serverPid.ToString(Inv));
            Console.WriteLine("VALUE idle_seconds " + F(wall) + " s");
            Console.WriteLine("VALUE idle_cpu_cs " + F(100.0 * (csT1 - csT0) / clk / wall) + " %");
            Console.WriteLine("VALUE idle_cpu_py " + F(100.0 * (pyT1 - pyT0) / clk / wall) + " %");
            if (api.add_ints(2, 40) != 42) { Console.Error.WriteLine("CHECK FAILED: add_ints after idle"); ok = false; }
        }
        finally
        {
            ((IDisposable)api).Dispose();
            spin.Dispose();
            try { tcp.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
            tcp.Dispose();
            try { unix.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
            unix.Dispose();
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            mmf.Dispose();
            bigPin.Free();
            echoPin.Free();
            try { File.Delete(copyPath); } catch (IOException) { }
        }
        return ok ? 0 : 1;
    }

    /// <summary>The in-place request case, through ILessPyConnection.NewRequestArray&lt;T&gt; when the library has it
    /// (found by reflection so that this file builds against a library without it).</summary>
    static bool InPlace(IBench api, ILessPyConnection conn, float[] src, int n, int calls, bool haveResultArray)
    {
        MethodInfo m = null;
        foreach (Type t in new[] { typeof(ILessPyConnection), conn.GetType() })
        {
            foreach (MethodInfo c in t.GetMethods())
                if (c.Name == "NewRequestArray" && c.IsGenericMethodDefinition && c.GetGenericArguments().Length == 1) { m = c; break; }
            if (m != null) break;
        }
        if (m == null)
        {
            Console.WriteLine("SKIP big_inplace ILessPyConnection.NewRequestArray<T> does not exist in this LessPy.dll");
            return true;
        }
        ParameterInfo[] ps = m.GetParameters();
        if (ps.Length != 1 || ps[0].ParameterType != typeof(int[]) || m.ReturnType != typeof(NdArray))
        {
            Console.WriteLine("SKIP big_inplace NewRequestArray<T> has a signature this benchmark does not know: " + m);
            return true;
        }
        try { return InPlaceCalls(api, conn, m.MakeGenericMethod(typeof(float)), src, n, calls, haveResultArray); }
        catch (Exception e)
        {
            Exception inner = e is TargetInvocationException && e.InnerException != null ? e.InnerException : e;
            if (!(inner is LessPyException) && !(inner is InvalidOperationException) && !(inner is NotSupportedException)) throw;
            Console.WriteLine("SKIP big_inplace the call failed: " + inner.GetType().Name + ": " + OneLine(inner.Message));
            return true;
        }
    }

    static bool InPlaceCalls(IBench api, ILessPyConnection conn, MethodInfo mf, float[] src, int n, int calls, bool haveResultArray)
    {
        bool ok = true;
        var times = new List<double>(calls);
        for (int i = -2; i < calls; i++)
        {
            long t0 = Stopwatch.GetTimestamp();
            var a = (NdArray)mf.Invoke(conn, new object[] { new[] { n, n } });
            Span<float> s = MemoryMarshal.Cast<byte, float>(MemoryMarshal.AsMemory(a.DataMemory).Span);
            src.AsSpan().CopyTo(s);     // the app fills the array in place (here: from its own data)
            long t1 = Stopwatch.GetTimestamp();
            NdArray r = haveResultArray ? api.inc_into_result(a) : api.inc_ndarray(a);
            if (i >= 0) times.Add(Us(t1));
            if (i == calls - 1 || i == -2) ok &= CheckInc("in-place inc", r, src);
            if (i == -2) Console.WriteLine("INFO in-place fill of 64 MiB took " + F(Us(t0) - Us(t1)) + " us (not counted)");
        }
        Report("big_inplace", times);
        if (!haveResultArray) Console.WriteLine("INFO big_inplace used inc_ndarray (a + 1, copied into the response): no result_array");
        return ok;
    }

    static double Throughput(IBench api, int threads, double seconds, ref bool ok)
    {
        var counts = new long[threads];
        var failed = new bool[threads];
        var ts = new Thread[threads];
        var start = new ManualResetEventSlim(false);
        long stopAt = 0;
        for (int t = 0; t < threads; t++)
        {
            int me = t;
            ts[t] = new Thread(() =>
            {
                start.Wait();
                long c = 0;
                while (Stopwatch.GetTimestamp() < Volatile.Read(ref stopAt))
                {
                    if (api.add_ints(me, (int)(c & 0xffff)) != me + (int)(c & 0xffff)) { failed[me] = true; break; }
                    c++;
                }
                counts[me] = c;
            });
            ts[t].Start();
        }
        long t0 = Stopwatch.GetTimestamp();
        Volatile.Write(ref stopAt, t0 + (long)(seconds * Stopwatch.Frequency));
        start.Set();
        foreach (var th in ts) th.Join();
        double wall = (Stopwatch.GetTimestamp() - t0) / (double)Stopwatch.Frequency;
        long total = 0;
        for (int t = 0; t < threads; t++) { total += counts[t]; if (failed[t]) { ok = false; Console.Error.WriteLine("CHECK FAILED: a wrong add_ints result on thread " + t); } }
        return total / wall;
    }

    // ------------------------------------------------------------------ live kernel

    static int Live()
    {
        string folder = S("folder");
        int calls = I("small", 3000);
        IBench api = LessPythonInvoke.Connect<IBench>(folder);
        bool ok = true;
        try
        {
            for (int i = 0; i < 200; i++) api.noop();
            if (api.add_ints(2, 40) != 42) { Console.Error.WriteLine("CHECK FAILED: live add_ints"); ok = false; }
            var t = new List<double>(calls);
            for (int i = 0; i < calls; i++) { long t0 = Stopwatch.GetTimestamp(); api.noop(); t.Add(Us(t0)); }
            Report("live_noop", t);
        }
        finally { ((IDisposable)api).Dispose(); }
        return ok ? 0 : 1;
    }

    // ------------------------------------------------------------------ the spin floor alone

    static int SpinOnly()
    {
        int calls = I("small", 20000);
        using (var spin = new SpinPeer(S("spinmmf"), S("spinsock")))
        {
            for (int i = 0; i < 2000; i++) spin.RoundTrip();
            var t = new List<double>(calls);
            for (int i = 0; i < calls; i++) { long t0 = Stopwatch.GetTimestamp(); spin.RoundTrip(); t.Add(Us(t0)); }
            Report(S("name"), t);
        }
        return 0;
    }

    // ------------------------------------------------------------------ small calls alone

    static int SmallOnly()
    {
        int calls = I("small", 20000);
        string prefix = S("prefix");
        IBench api = LessPythonInvoke.Connect<IBench>(S("folder"));
        bool ok = true;
        try
        {
            for (int i = 0; i < 2000; i++) { api.noop(); api.add_ints(2, 40); }
            var noop = new List<double>(calls);
            var small = new List<double>(calls);
            for (int b = 0; b < 10; b++)
            {
                for (int i = 0; i < calls / 10; i++) { long t0 = Stopwatch.GetTimestamp(); api.noop(); noop.Add(Us(t0)); }
                for (int i = 0; i < calls / 10; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    int r = api.add_ints(2, 40);
                    small.Add(Us(t0));
                    if (r != 42) { Console.Error.WriteLine("CHECK FAILED: add_ints(2, 40) returned " + r); ok = false; }
                }
            }
            Report(prefix + "noop", noop);
            Report(prefix + "add_ints", small);
        }
        finally { ((IDisposable)api).Dispose(); }
        return ok ? 0 : 1;
    }

    // ------------------------------------------------------------------ Connect + first call, in a fresh process

    static int ConnectOnce()
    {
        long t0 = Stopwatch.GetTimestamp();
        IBench api = LessPythonInvoke.Connect<IBench>(S("folder"));
        api.noop();
        double us = Us(t0);
        bool ok = api.add_ints(2, 40) == 42;
        ((IDisposable)api).Dispose();
        Console.WriteLine("VALUE connect_first_call " + F(us) + " us");
        return ok ? 0 : 1;
    }

    // ------------------------------------------------------------------ cold start

    static int Cold()
    {
        // measured from process start, as an app would see it: the runtime is up, Initialize starts Python
        long t0 = Stopwatch.GetTimestamp();
        IBench api = LessPythonInvoke.Initialize<IBench>(S("venv"), S("module"));
        api.noop();
        double first = Us(t0);
        bool ok = api.add_ints(2, 40) == 42;
        ((IDisposable)api).Dispose();
        Console.WriteLine("VALUE cold_initialize " + F(first) + " us");

        var psi = new ProcessStartInfo(S("python"), "-c \"import numpy\"") { UseShellExecute = false };
        t0 = Stopwatch.GetTimestamp();
        using (var p = Process.Start(psi)) p.WaitForExit();
        Console.WriteLine("VALUE floor_import_numpy " + F(Us(t0)) + " us");
        return ok ? 0 : 1;
    }

    // ------------------------------------------------------------------ helpers

    static string OneLine(string s) { return s.Replace('\n', ' ').Replace('\r', ' '); }

    /// <summary>One byte out, one byte back, blocking receive: the floor of a notify round trip.</summary>
    static void RoundTrip(Socket s, byte[] one)
    {
        one[0] = 1;
        if (s.Send(one, 0, 1, SocketFlags.None) != 1) throw new IOException("echo server: send failed");
        if (s.Receive(one, 0, 1, SocketFlags.None) != 1) throw new IOException("echo server closed the connection");
    }

    static long RssKb(string pid)
    {
        foreach (string line in File.ReadAllLines("/proc/" + pid + "/status"))
            if (line.StartsWith("VmRSS:", StringComparison.Ordinal))
                return long.Parse(line.Substring(6).Trim().Split(' ')[0], Inv);
        return -1;
    }

    static long CpuTicks(string pid)
    {
        string s = File.ReadAllText("/proc/" + pid + "/stat");
        string[] f = s.Substring(s.LastIndexOf(')') + 2).Split(' ');   // f[0] is field 3 (state)
        return long.Parse(f[11], Inv) + long.Parse(f[12], Inv);        // utime (14) + stime (15)
    }

    static bool CheckInc(string what, NdArray r, float[] src)
    {
        ReadOnlySpan<float> s = r.AsSpan<float>();
        if (s.Length != src.Length) { Console.Error.WriteLine("CHECK FAILED: " + what + " returned " + s.Length + " elements"); return false; }
        for (int i = 0; i < src.Length; i += 4099)
            if (s[i] != src[i] + 1) { Console.Error.WriteLine("CHECK FAILED: " + what + " element " + i); return false; }
        if (s[src.Length - 1] != src[src.Length - 1] + 1) { Console.Error.WriteLine("CHECK FAILED: " + what + " last element"); return false; }
        return true;
    }

    static bool CheckEcho(NdArray r, double[] src)
    {
        ReadOnlySpan<double> s = r.AsSpan<double>();
        if (s.Length != src.Length) { Console.Error.WriteLine("CHECK FAILED: echo returned " + s.Length + " elements"); return false; }
        for (int i = 0; i < src.Length; i += 97)
            if (s[i] != src[i]) { Console.Error.WriteLine("CHECK FAILED: echo element " + i); return false; }
        return true;
    }
}

/// <summary>The C# half of the spin floor (see floor_servers.py): a sequence word in a shared mapped file, spun on
/// for up to 200 µs, then a blocking wait on a Unix socket (with a 1 ms re-check).</summary>
unsafe sealed class SpinPeer : IDisposable
{
    const double SpinUs = 200;
    readonly MemoryMappedFile _mmf;
    readonly MemoryMappedViewAccessor _view;
    readonly byte* _p;
    readonly Socket _sock;
    readonly byte[] _buf = new byte[64];
    readonly long _spinTicks = (long)(SpinUs * Stopwatch.Frequency / 1e6);
    long _seq;

    public SpinPeer(string mmfPath, string sockPath)
    {
        _mmf = MemoryMappedFile.CreateFromFile(mmfPath, FileMode.Open, null, 4096, MemoryMappedFileAccess.ReadWrite);
        _view = _mmf.CreateViewAccessor(0, 4096, MemoryMappedFileAccess.ReadWrite);
        byte* a = null;
        _view.SafeMemoryMappedViewHandle.AcquirePointer(ref a);
        _p = a + _view.PointerOffset;
        _sock = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        _sock.Connect(new UnixDomainSocketEndPoint(sockPath));
    }

    public void RoundTrip()
    {
        long seq = ++_seq;
        Volatile.Write(ref *(long*)_p, seq);
        Thread.MemoryBarrier();
        if (Volatile.Read(ref *(int*)(_p + 8)) == 1) _sock.Send(_buf, 0, 1, SocketFlags.None);
        long deadline = Stopwatch.GetTimestamp() + _spinTicks;
        while (Volatile.Read(ref *(long*)(_p + 16)) != seq)
        {
            if (Stopwatch.GetTimestamp() < deadline) continue;
            Volatile.Write(ref *(int*)(_p + 24), 1);
            Thread.MemoryBarrier();
            if (Volatile.Read(ref *(long*)(_p + 16)) != seq && _sock.Poll(1000, SelectMode.SelectRead))
                if (_sock.Receive(_buf, 0, _buf.Length, SocketFlags.None) == 0) throw new IOException("spin peer has gone");
            Volatile.Write(ref *(int*)(_p + 24), 0);
        }
    }

    public void Dispose()
    {
        _sock.Dispose();
        _view.SafeMemoryMappedViewHandle.ReleasePointer();
        _view.Dispose();
        _mmf.Dispose();
    }
}
