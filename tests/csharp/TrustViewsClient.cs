// Issue 14 follow-up (data integrity of NdArray views): a view read while its lane is closed, taken over or reused by
// another thread either returns the right bytes or throws InvalidOperationException; it never returns another call's
// bytes, never crashes the process, and an in-place request array is never corrupted by another thread's call.
// Usage: TrustViewsClient.exe MODE FOLDER [args]. Prints "CHECK name ok" or "CHECK name FAIL: why"; exits 1 on a failure.
//   dispose FOLDER ROUNDS N          threads copy a big result (ToArray, Data, CopyTo) while the proxy is disposed
//   restart FOLDER GOFILE N          a thread copies a big result while another thread's call reconnects to a new server
//                                    run (the test restarts the server once this prints READY, then creates GOFILE)
//   torn FOLDER THREADS SECONDS N    more threads than lanes copy their results again and again (takeovers)
//   sharedarg FOLDER PAIRS SECONDS N one thread's result passed as an argument by another thread while the first calls again
//   inplace FOLDER THREADS SECONDS N more threads than lanes: half fill in-place request arrays, half send copies
using System;
using System.Collections.Generic;
using System.IO;
using System.Threading;
using LessPy;

public interface IViews : IDisposable, ILessPyConnection
{
    [PythonImport] NdArray fill(int tag, int n);
    [PythonImport] int count_not(NdArray a, int tag);
    [PythonImport] int add_ints(int a, int b);
}

public static class TrustViewsClient
{
    static int failures;

    static void Check(string name, bool ok, string detail = "")
    {
        Console.WriteLine("CHECK " + name + (ok ? " ok" : " FAIL: " + (detail ?? "").Replace("\n", " | ")));
        Console.Out.Flush();
        if (!ok) failures++;
    }

    public static int Main(string[] args)
    {
        string mode = args[0], folder = args[1];
        switch (mode)
        {
            case "dispose": Dispose(folder, int.Parse(args[2]), int.Parse(args[3])); break;
            case "restart": Restart(folder, args[2], int.Parse(args[3])); break;
            case "torn": Torn(folder, int.Parse(args[2]), double.Parse(args[3]), int.Parse(args[4])); break;
            case "sharedarg": SharedArg(folder, int.Parse(args[2]), double.Parse(args[3]), int.Parse(args[4])); break;
            case "inplace": InPlace(folder, int.Parse(args[2]), double.Parse(args[3]), int.Parse(args[4])); break;
            default: Console.WriteLine("unknown mode " + mode); return 2;
        }
        Console.WriteLine(failures == 0 ? "ALL OK" : failures + " FAILED");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>Reads a result again and again with one of the checked reads; counts right copies, wrong copies (with the first) and throws.</summary>
    sealed class Reader
    {
        public long Good, Wrong, Stale;
        public string FirstWrong, FirstOther;
        public volatile bool Started;

        public void Run(NdArray r, int tag, int how)
        {
            int[] dest = new int[r.Length];
            while (true)
            {
                int[] c;
                try
                {
                    if (how == 0) c = r.ToArray<int>();
                    else if (how == 1)
                    {
                        byte[] b = r.Data;
                        c = new int[b.Length / 4];
                        Buffer.BlockCopy(b, 0, c, 0, b.Length);
                    }
                    else
                    {
#if NO_COPYTO
                        c = r.ToArray<int>();                  // built against a LessPy.dll before CopyTo (to see the test fail there)
#else
                        r.CopyTo<int>(dest);
                        c = dest;
#endif
                    }
                }
                catch (InvalidOperationException) { Interlocked.Increment(ref Stale); return; }
                catch (Exception e) { if (FirstOther == null) FirstOther = e.GetType().Name + ": " + e.Message; return; }
                Started = true;
                // one element a page (and the last): the loop spends its time copying, where a close would fault
                int bad = 0, other = 0;
                for (int i = 0; i < c.Length; i += 1024) if (c[i] != tag) { bad++; other = c[i]; }
                if (c.Length > 0 && c[c.Length - 1] != tag) { bad++; other = c[c.Length - 1]; }
                if (bad > 0)
                {
                    Interlocked.Increment(ref Wrong);
                    if (FirstWrong == null) FirstWrong = bad + " sampled pages of " + c.Length + " elements were not " + tag + " (e.g. " + other + "), no exception";
                }
                else Interlocked.Increment(ref Good);
            }
        }
    }

    static void Collect()
    {
        for (int i = 0; i < 3; i++)
        {
            GC.Collect();
            GC.WaitForPendingFinalizers();
        }
    }

    /// <summary>This process's address space in KiB (VmSize).</summary>
    static long VmKiB()
    {
        foreach (string line in File.ReadAllLines("/proc/self/status"))
            if (line.StartsWith("VmSize:")) return long.Parse(line.Substring(7).Trim().Split(' ')[0]);
        return 0;
    }

    /// <summary>
    /// Rounds: connect, get a big result, start three readers (ToArray, Data, CopyTo) copying it in a loop, dispose the
    /// proxy while they copy. Before the fix Dispose unmapped the lane under the copies (SIGSEGV, the process dies).
    /// </summary>
    static void Dispose(string folder, int rounds, int n)
    {
        long stale = 0, wrong = 0, good = 0, afterFirst = 0;
        string firstWrong = null, firstOther = null;
        for (int round = 0; round < rounds; round++)
        {
            IViews api = LessPythonInvoke.Connect<IViews>(folder);
            NdArray r = api.fill(7, n);
            var readers = new Reader[3];
            var threads = new Thread[3];
            for (int k = 0; k < 3; k++)
            {
                var rd = readers[k] = new Reader();
                int how = k;
                threads[k] = new Thread(() => rd.Run(r, 7, how));
                threads[k].Start();
            }
            foreach (Reader rd in readers) while (!rd.Started && rd.FirstOther == null && rd.Stale == 0) Thread.Sleep(1);
            Thread.Sleep(1 + round % 7);                   // into a copy, at varying points
            api.Dispose();
            foreach (Thread t in threads) t.Join();
            r = null;
            if (round == 0)
            {
                Collect();
                afterFirst = VmKiB();
            }
            foreach (Reader rd in readers)
            {
                stale += rd.Stale; wrong += rd.Wrong; good += rd.Good;
                if (firstWrong == null) firstWrong = rd.FirstWrong;
                if (firstOther == null) firstOther = rd.FirstOther;
            }
        }
        Console.WriteLine("dispose: right copies " + good + ", stale (threw) " + stale + ", wrong " + wrong);
        // the closed lanes' ranges (zero pages since Dispose) are unmapped once their views are collected
        long before = afterFirst;
        Collect();
        long after = VmKiB();
        Console.WriteLine("dispose: address space after the first round " + before / 1024 + " MiB, after all rounds " + after / 1024 + " MiB");
        Check("closed_lanes_ranges_are_unmapped_once_their_views_are_collected", after - before < 6L * n * 4 / 1024,
            "the address space grew by " + (after - before) / 1024 + " MiB over " + rounds + " rounds of a " + n * 4 / 1048576 + " MiB result");
        Check("copies_racing_dispose_are_right_or_throw", wrong == 0 && firstOther == null, firstWrong ?? firstOther);
        Check("every_reader_saw_its_view_die", stale == 3L * rounds, "stale " + stale + " of " + 3 * rounds);
    }

    /// <summary>
    /// A thread copies a big result in a loop; once the test has restarted the server (GOFILE exists), the main thread
    /// calls: its lane opening finds a new server run and closes every lane of the old one, the reader's too. Before the fix
    /// the close unmapped the range under the copy (SIGSEGV). After it the reader's copy throws, and the call works.
    /// </summary>
    static void Restart(string folder, string go, int n)
    {
        IViews api = LessPythonInvoke.Connect<IViews>(folder);
        NdArray r = api.fill(7, n);
        var rd = new Reader();
        var reader = new Thread(() => rd.Run(r, 7, 0));
        reader.Start();
        while (!rd.Started) Thread.Sleep(1);
        Console.WriteLine("READY");
        Console.Out.Flush();
        while (!File.Exists(go)) Thread.Sleep(5);
        int sum = -1;
        string err = null;
        for (int i = 0; i < 50 && sum < 0; i++)
        {
            try { sum = api.add_ints(i, 1) - i; }
            catch (Exception e) { err = e.GetType().Name + ": " + e.Message; Thread.Sleep(100); }
        }
        reader.Join();
        Console.WriteLine("restart: right copies " + rd.Good + ", stale " + rd.Stale + ", wrong " + rd.Wrong);
        Check("copy_racing_reconnect_is_right_or_throws", rd.Wrong == 0 && rd.FirstOther == null, rd.FirstWrong ?? rd.FirstOther);
        Check("reader_saw_its_view_die", rd.Stale == 1, "the reader ended without an InvalidOperationException");
        Check("call_after_restart_works", sum == 1, err);
        api.Dispose();
    }

    /// <summary>
    /// More threads than lanes: each gets fill(me, n) and copies it again and again (ToArray, Data, CopyTo in turn). A
    /// takeover of its lane by another thread must make the copy throw; before the fix ToArray returned the thief's data.
    /// </summary>
    static void Torn(string folder, int threads, double seconds, int n)
    {
        long torn = 0, stale = 0, good = 0, errors = 0;
        string firstTorn = null, firstError = null;
        var sw = System.Diagnostics.Stopwatch.StartNew();
        using (IViews api = LessPythonInvoke.Connect<IViews>(folder))
        {
            api.CallTimeout = TimeSpan.FromSeconds(120);
            DateTime end = DateTime.MaxValue;
            var warm = new Barrier(threads, b => { end = DateTime.UtcNow.AddSeconds(seconds); });
            var ts = new List<Thread>();
            for (int t = 0; t < threads; t++)
            {
                int me = t + 1;
                var th = new Thread(() =>
                {
                    int[] dest = new int[n];
                    int round = 0;
                    // every thread first calls once (the lanes are opened: 64, the rest taken over), then all copy and call
                    try { api.fill(me, 1); }
                    catch (Exception) { }
                    warm.SignalAndWait();
                    while (DateTime.UtcNow < end)
                    {
                        NdArray r;
                        try { r = api.fill(me, n); }
                        catch (Exception e)
                        {
                            Interlocked.Increment(ref errors);
                            if (firstError == null) firstError = e.GetType().Name + ": " + e.Message;
                            continue;
                        }
                        for (int k = 0; k < 20; k++)
                        {
                            int[] c;
                            try
                            {
                                int how = (round + k) % 3;
                                if (how == 0) c = r.ToArray<int>();
                                else if (how == 1)
                                {
                                    byte[] b = r.Data;
                                    c = new int[n];
                                    Buffer.BlockCopy(b, 0, c, 0, b.Length);
                                }
                                else
                                {
#if NO_COPYTO
                                    c = r.ToArray<int>();
#else
                                    r.CopyTo<int>(dest);
                                    c = dest;
#endif
                                }
                            }
                            catch (InvalidOperationException) { Interlocked.Increment(ref stale); break; }
                            int bad = 0, other = 0;
                            for (int i = 0; i < c.Length; i++) if (c[i] != me) { bad++; other = c[i]; }
                            if (bad > 0)
                            {
                                Interlocked.Increment(ref torn);
                                if (firstTorn == null) firstTorn = "thread " + me + ": a copy had " + bad + " of " + n + " elements != " + me + " (e.g. " + other + ") without throwing";
                            }
                            else Interlocked.Increment(ref good);
                        }
                        round++;
                    }
                });
                th.Start();
                ts.Add(th);
            }
            foreach (Thread th in ts) th.Join();
        }
        Console.WriteLine("torn: warm-up and run " + sw.Elapsed.TotalSeconds.ToString("0.0") + " s");
        Console.WriteLine("torn: right copies " + good + ", stale (threw) " + stale + ", wrong copies " + torn + ", call errors " + errors);
        Check("copies_of_taken_over_views_are_right_or_throw", torn == 0, firstTorn);
        Check("takeovers_happened", stale > 0, "no view was taken over: the test did not test anything (more threads needed?)");
        Check("no_call_errors", errors == 0, firstError);
    }

    /// <summary>
    /// Pairs of threads: the owner calls fill(tag, n) again and again and publishes each result; the user passes the
    /// published result to count_not(r, tag). The owner's next call reuses the lane the result lives on, so the argument's
    /// copy into the user's request may overlap the next reply: the call must throw, or Python must see only tag.
    /// </summary>
    static void SharedArg(string folder, int pairs, double seconds, int n)
    {
        long wrong = 0, right = 0, stale = 0, errors = 0;
        string firstWrong = null, firstError = null;
        using (IViews api = LessPythonInvoke.Connect<IViews>(folder))
        {
            api.CallTimeout = TimeSpan.FromSeconds(120);
            DateTime end = DateTime.UtcNow.AddSeconds(seconds);
            var ts = new List<Thread>();
            for (int p = 0; p < pairs; p++)
            {
                var slot = new object[1];
                int pair = p;
                var owner = new Thread(() =>
                {
                    int i = 0;
                    while (DateTime.UtcNow < end)
                    {
                        int tag = pair * 1000000 + (++i);
                        try
                        {
                            Volatile.Write(ref slot[0], Tuple.Create(api.fill(tag, n), tag));
                            if (i % 2 == 0) Thread.Sleep(1);     // the user's copy starts while the view is valid, the next call overlaps it
                        }
                        catch (Exception e)
                        {
                            Interlocked.Increment(ref errors);
                            if (firstError == null) firstError = e.GetType().Name + ": " + e.Message;
                        }
                    }
                });
                var user = new Thread(() =>
                {
                    object last = null;
                    while (DateTime.UtcNow < end)
                    {
                        var got = (Tuple<NdArray, int>)Volatile.Read(ref slot[0]);
                        if (got == null || got == last) { Thread.Yield(); continue; }     // each result once, as soon as it is published
                        last = got;
                        try
                        {
                            int bad = api.count_not(got.Item1, got.Item2);
                            if (bad != 0)
                            {
                                Interlocked.Increment(ref wrong);
                                if (firstWrong == null) firstWrong = "Python saw " + bad + " of " + n + " argument elements != " + got.Item2 + ", no exception";
                            }
                            else Interlocked.Increment(ref right);
                        }
                        catch (InvalidOperationException) { Interlocked.Increment(ref stale); }
                        catch (Exception e)
                        {
                            Interlocked.Increment(ref errors);
                            if (firstError == null) firstError = e.GetType().Name + ": " + e.Message;
                        }
                    }
                });
                owner.Start();
                user.Start();
                ts.Add(owner);
                ts.Add(user);
            }
            foreach (Thread th in ts) th.Join();
        }
        Console.WriteLine("sharedarg: right arguments " + right + ", stale (threw) " + stale + ", wrong arguments " + wrong + ", errors " + errors);
        Check("shared_view_arguments_are_right_or_throw", wrong == 0, firstWrong);
        Check("shared_view_arguments_no_other_errors", errors == 0, firstError);
    }

    /// <summary>
    /// More threads than lanes; even threads fill in-place request arrays chunk by chunk (taking the writable span again
    /// for each chunk) and send them, odd threads send ordinary arrays. Before the fix a lane with an unsent in-place array
    /// was taken over: the filler's writes landed in the thief's request, and both calls got wrong arguments silently.
    /// </summary>
    static void InPlace(string folder, int threads, double seconds, int n)
    {
        long corrupted = 0, fine = 0, stale = 0, errors = 0;
        string first = null, firstErr = null;
        using (IViews api = LessPythonInvoke.Connect<IViews>(folder))
        {
            api.CallTimeout = TimeSpan.FromSeconds(120);
            DateTime end = DateTime.MaxValue;
            var warm = new Barrier(threads, b => { end = DateTime.UtcNow.AddSeconds(seconds); });
            var ts = new List<Thread>();
            for (int t = 0; t < threads; t++)
            {
                int me = t + 1;
                var th = new Thread(() =>
                {
                    var mine = new int[n];
                    for (int i = 0; i < n; i++) mine[i] = me;
                    bool useInPlace = me % 2 == 0;
                    try { api.fill(me, 1); }                   // the lanes are opened first (64; the rest are taken over)
                    catch (Exception) { }
                    warm.SignalAndWait();
                    while (DateTime.UtcNow < end)
                    {
                        try
                        {
                            NdArray a;
                            if (useInPlace)
                            {
                                a = api.NewRequestArray<int>(n);
                                for (int off = 0; off < n; off += 4096)
                                {
                                    Span<int> s = a.AsWritableSpan<int>();
                                    int m = Math.Min(4096, n - off);
                                    for (int i = 0; i < m; i++) s[off + i] = me;
                                    if ((off & 0xFFFF) == 0) Thread.Yield();     // let thieves in while the array is half filled
                                }
                            }
                            else a = NdArray.FromArray(mine);
                            int wrong = api.count_not(a, me);
                            if (wrong != 0)
                            {
                                Interlocked.Increment(ref corrupted);
                                if (first == null) first = "thread " + me + (useInPlace ? " (in place)" : " (ordinary array)") + ": Python saw " + wrong + " of " + n + " argument elements != " + me + ", no error";
                            }
                            else Interlocked.Increment(ref fine);
                        }
                        catch (InvalidOperationException) { Interlocked.Increment(ref stale); }
                        catch (Exception e)
                        {
                            Interlocked.Increment(ref errors);
                            if (firstErr == null) firstErr = e.GetType().Name + ": " + e.Message;
                        }
                    }
                });
                th.Start();
                ts.Add(th);
            }
            foreach (Thread th in ts) th.Join();
        }
        Console.WriteLine("inplace: right arguments " + fine + ", stale (threw) " + stale + ", corrupted " + corrupted + ", errors " + errors);
        Check("in_place_arrays_never_corrupted_by_takeovers", corrupted == 0, first);
        Check("in_place_arrays_never_stale_for_their_own_thread", stale == 0, stale + " in-place arrays died before their own thread's call");
        Check("in_place_no_call_errors", errors == 0, firstErr);
    }
}
