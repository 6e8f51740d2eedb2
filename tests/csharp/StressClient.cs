// The C# side of the stress runs (issue 7 item 8), through the real client (LessPythonInvoke.Connect<T>).
//   mono StressClient.exe soak <work folder> <threads> <calls per thread>
//       threads share ONE proxy; small calls and one 1 MiB call in 100, every result checked against the caller's
//       tag and call number. Prints one JSON line: calls, wrong, errors, seconds.
//   mono StressClient.exe kill <work folder> <spin|stream|mega> <tag>
//       starts calls, prints "ready", and keeps calling until it is SIGKILLed (the test kills it mid-call).
// Functions: tests/stress/soak_module.py.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using LessPy;

public interface ISoak
{
    [PythonImport] (int, int) stamp(int caller, int i);
    [PythonImport] string stamp_text(int caller, int i);
    [PythonImport] int add_ints(int a, int b);
    [PythonImport] NdArray stamp_array(int caller, int i, NdArray a);
    [PythonImport] int spin_forever();
}

static class StressClient
{
    const int MegaEvery = 100;
    const int MegaInts = 262144;            // 1 MiB

    static int Main(string[] args)
    {
        if (args.Length == 4 && args[0] == "soak") return Soak(args[1], int.Parse(args[2]), int.Parse(args[3]));
        if (args.Length == 4 && args[0] == "kill") return Kill(args[1], args[2], int.Parse(args[3]));
        Console.Error.WriteLine("usage: StressClient.exe soak <folder> <threads> <calls per thread> | kill <folder> <mode> <tag>");
        return 2;
    }

    static bool All(ReadOnlySpan<int> s, int v)
    {
        for (int i = 0; i < s.Length; i++) if (s[i] != v) return false;
        return true;
    }

    /// <summary>One call of caller <paramref name="c"/>, number <paramref name="i"/>; true when its result is its own.</summary>
    static bool OneCall(ISoak api, int c, int i, int[] buffer)
    {
        if (i % MegaEvery == MegaEvery - 1)
        {
            int tag = c * 10000000 + i;
            for (int k = 0; k < buffer.Length; k++) buffer[k] = tag;
            NdArray r = api.stamp_array(c, i, NdArray.FromArray(buffer, buffer.Length));
            return r.Length == buffer.Length && All(r.AsSpan<int>(), tag + 1);
        }
        switch (i % 3)
        {
            case 0:
                var t = api.stamp(c, i);
                return t.Item1 == c && t.Item2 == i;
            case 1:
                return api.stamp_text(c, i) == c + ":" + i;
            default:
                return api.add_ints(c * 1000000, i) == c * 1000000 + i;
        }
    }

    static int Soak(string folder, int threads, int calls)
    {
        long done = 0, wrong = 0;
        var errors = new List<string>();
        var watch = Stopwatch.StartNew();
        using (var conn = (IDisposable)LessPythonInvoke.Connect<ISoak>(folder))
        {
            var api = (ISoak)conn;
            var workers = new List<Thread>();
            for (int t = 0; t < threads; t++)
            {
                int c = t;
                var th = new Thread(() =>
                {
                    var buffer = new int[MegaInts];
                    try
                    {
                        for (int i = 0; i < calls; i++)
                        {
                            if (!OneCall(api, c, i, buffer)) Interlocked.Increment(ref wrong);
                            Interlocked.Increment(ref done);
                        }
                    }
                    catch (Exception e)
                    {
                        lock (errors) errors.Add("thread " + c + ": " + e.GetType().Name + ": " + e.Message.Replace("\"", "'").Replace("\n", " "));
                    }
                });
                th.Start();
                workers.Add(th);
            }
            foreach (var th in workers) th.Join();
        }
        double seconds = watch.Elapsed.TotalSeconds;
        Console.WriteLine("{\"calls\": " + done + ", \"wrong\": " + wrong + ", \"errors\": [" +
                          string.Join(", ", errors.ConvertAll(e => "\"" + e.Replace("\\", "/") + "\"")) + "], \"seconds\": " +
                          seconds.ToString("F1", System.Globalization.CultureInfo.InvariantCulture) + "}");
        return errors.Count == 0 && wrong == 0 ? 0 : 1;
    }

    static int Kill(string folder, string mode, int tag)
    {
        var api = LessPythonInvoke.Connect<ISoak>(folder);
        if (api.add_ints(tag, 1) != tag + 1) return 1;
        if (mode == "spin")
        {
            var call = Task.Run(() => api.spin_forever());
            Thread.Sleep(100);
            Console.WriteLine("ready");
            Console.Out.Flush();
            call.Wait();
            return 1;
        }
        Console.WriteLine("ready");
        Console.Out.Flush();
        var buffer = new int[MegaInts];
        for (int i = 0; ; i++)
            if (!OneCall(api, tag, mode == "mega" ? i * MegaEvery + MegaEvery - 1 : i * 3, buffer)) return 1;
    }
}
