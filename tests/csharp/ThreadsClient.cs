// Many threads on ONE proxy: each thread's NdArray results are its own, correct, and unchanged until that thread's
// next call; then the old view throws. Also the IDisposable / ILessPyConnection-derived interface (issue 9 item 1).
//   mono ThreadsClient.exe <work folder> <threads> <calls per thread> <elements per result> [inplace|inrequest]
// With "inplace" it also checks in-place request arrays (NDARRAY_AT: needs a server whose decoder has that tag).
// With "inrequest" every third call of each thread is an echo of its own array, whose reply points into the
// request (NDARRAY_IN_REQUEST), and the rules of such results are checked.
// Prints CHECK lines; exits 0 only when all passed.
using System;
using System.Collections.Generic;
using System.Threading;
using LessPy;

public interface ILanes : IDisposable, ILessPyConnection
{
    [PythonImport] int add_ints(int a, int b);
    [PythonImport] NdArray fill(int tag, int n);
    [PythonImport] (NdArray, int) fill_pair(int tag, int n);
    [PythonImport] double sum_array(NdArray a);
    [PythonImport] NdArray scale(NdArray a, double k);
    [PythonImport] NdArray echo(NdArray a);
    [PythonImport] NdArray tail(NdArray a, int k);
    [PythonImport] string echo_flags();
}

static class ThreadsClient
{
    static int failures;

    static void Check(string name, bool ok, string detail = "")
    {
        if (!ok) Interlocked.Increment(ref failures);
        Console.WriteLine("CHECK " + name + (ok ? " ok" : " FAIL " + detail));
    }

    static bool AllEqual(ReadOnlySpan<int> s, int v)
    {
        for (int i = 0; i < s.Length; i++) if (s[i] != v) return false;
        return true;
    }

    static int Main(string[] args)
    {
        string folder = args[0];
        int threads = int.Parse(args[1]), calls = int.Parse(args[2]), n = int.Parse(args[3]);
        string mode = args.Length > 4 ? args[4] : "";
        using (ILanes api = LessPythonInvoke.Connect<ILanes>(folder))
        {
            api.CallTimeout = TimeSpan.FromSeconds(60);                    // set through the derived interface
            Check("derived_interface_timeout", api.CallTimeout == TimeSpan.FromSeconds(60), api.CallTimeout.ToString());
            Check("derived_interface_pid", api.ServerPid > 0, api.ServerPid.ToString());
            Check("derived_interface_call", api.add_ints(2, 40) == 42);

            int wrong = 0, changed = 0, staleDidNotThrow = 0, errors = 0, done = 0;
            string firstError = null;
            var workers = new List<Thread>();
            for (int t = 0; t < threads; t++)
            {
                int me = t;
                var th = new Thread(() =>
                {
                    NdArray previous = null;
                    var own = new int[n];
                    for (int i = 0; i < calls; i++)
                    {
                        int tag = me * 1000000 + i;
                        try
                        {
                            NdArray r;
                            if (mode == "inrequest" && i % 3 == 1)
                            {
                                for (int k = 0; k < own.Length; k++) own[k] = tag;
                                r = api.echo(NdArray.FromArray(own, n));     // a view of this call's request file
                            }
                            else if (i % 3 == 2)
                            {
                                var pair = api.fill_pair(tag, n);
                                r = pair.Item1;
                                if (pair.Item2 != tag) Interlocked.Increment(ref wrong);
                            }
                            else r = api.fill(tag, n);
                            if (previous != null)
                            {
                                try { previous.AsSpan<int>(); Interlocked.Increment(ref staleDidNotThrow); }
                                catch (InvalidOperationException) { }
                            }
                            if (r.Length != n || !AllEqual(r.AsSpan<int>(), tag)) Interlocked.Increment(ref wrong);
                            Thread.Sleep(i % 4);                               // other threads call meanwhile
                            if (!AllEqual(r.AsSpan<int>(), tag)) Interlocked.Increment(ref changed);
                            previous = r;
                        }
                        catch (Exception e)
                        {
                            if (Interlocked.Increment(ref errors) == 1) firstError = e.ToString();
                        }
                    }
                    Interlocked.Increment(ref done);
                });
                workers.Add(th);
                th.Start();
            }
            foreach (var th in workers) th.Join();
            Check("threads_finished", done == threads, done + " of " + threads);
            Check("threads_no_errors", errors == 0, errors + " errors; first: " + firstError);
            Check("threads_results_correct", wrong == 0, wrong + " wrong results of " + threads * calls);
            Check("threads_results_unchanged_until_next_call", changed == 0, changed + " results changed under their reader");
            Check("threads_stale_views_throw", staleDidNotThrow == 0, staleDidNotThrow + " stale views readable");

            if (mode == "inplace") InPlace(api);
            if (mode == "inrequest") InRequest(api, threads * ((calls + 1) / 3));
        }
        return failures == 0 ? 0 : 1;
    }

    static bool Equal(NdArray r, double[] want)
    {
        var s = r.AsSpan<double>();
        if (s.Length != want.Length) return false;
        for (int i = 0; i < s.Length; i++) if (s[i] != want[i]) return false;
        return true;
    }

    static void InRequest(ILanes api, int threadEchoes)
    {
        var x = new double[5000];
        for (int i = 0; i < x.Length; i++) x[i] = i * 0.25;
        NdArray r = api.echo(NdArray.FromArray(x, x.Length));
        Check("in_request_echo", Equal(r, x));
        // the result is the next call's argument: it goes out on another lane, copied from this lane's request file
        NdArray r2 = api.echo(r);
        Check("in_request_view_as_next_argument", Equal(r2, x));
        bool threw = false;
        try { r.AsSpan<double>(); } catch (InvalidOperationException) { threw = true; }
        Check("in_request_view_dies_on_next_call", threw);
        // an in-place request array made while such a view is held does not overwrite it
        NdArray q = api.NewRequestArray<double>(x.Length);
        var qw = q.AsWritableSpan<double>();
        for (int i = 0; i < qw.Length; i++) qw[i] = -1;
        Check("in_request_view_survives_new_request_array", Equal(r2, x));
        double sum = api.sum_array(q);
        Check("in_request_then_in_place", sum == -x.Length, sum.ToString());
        NdArray t = api.tail(NdArray.FromArray(x, x.Length), 7);
        var want = new double[7];
        Array.Copy(x, x.Length - 7, want, 0, 7);
        Check("in_request_part_of_an_argument", Equal(t, want), t.ToString());
        // an echo of an in-place request array: the reply points at the array's own bytes
        NdArray p = api.NewRequestArray<double>(x.Length);
        x.AsSpan().CopyTo(p.AsWritableSpan<double>());
        Check("in_request_echo_of_in_place_array", Equal(api.echo(p), x));
        // every echo (the threads' and these) allowed a reply into its request: the C# client sets the flag
        string flags = api.echo_flags();
        int calls = threadEchoes + 3;
        Check("in_request_flag_sent", flags == calls + "/" + calls, flags);
        Check("in_request_then_plain_call", api.add_ints(1, 2) == 3);
    }

    static void InPlace(ILanes api)
    {
        {
            // in-place request arrays: filled here, sent without a copy, dead after the call
            NdArray req = api.NewRequestArray<double>(1000);
            var w = req.AsWritableSpan<double>();
            for (int i = 0; i < w.Length; i++) w[i] = i;
            double sum = api.sum_array(req);
            Check("in_place_request_array", sum == 999.0 * 1000 / 2, sum.ToString());
            bool threw = false;
            try { req.AsWritableSpan<double>(); } catch (InvalidOperationException) { threw = true; }
            Check("in_place_array_dead_after_call", threw);
            threw = false;
            try { api.sum_array(req); } catch (ArgumentException) { threw = true; }
            Check("in_place_array_sent_once", threw);
            // a request array beside a result held from the previous call, and a big one (the request file grows)
            NdArray held = api.fill(77, 10);
            NdArray big = api.NewRequestArray<float>(1024, 1024);
            Check("held_view_survives_new_request_array", AllEqual(held.AsSpan<int>(), 77));
            var bw = big.AsWritableSpan<float>();
            for (int i = 0; i < bw.Length; i++) bw[i] = 1f;
            NdArray scaled = api.scale(big, 3.0);
            var ss = scaled.AsSpan<float>();
            bool allThree = ss.Length == 1024 * 1024;
            for (int i = 0; i < ss.Length && allThree; i++) allThree = ss[i] == 3f;
            Check("in_place_big_request_array", allThree, scaled.ToString());
            threw = false;
            try { held.AsSpan<int>(); } catch (InvalidOperationException) { threw = true; }
            Check("held_view_dies_on_next_call", threw);

            // another thread cannot send this thread's request array
            NdArray mine = api.NewRequestArray<int>(4);
            Exception other = null;
            var th2 = new Thread(() => { try { api.sum_array(mine); } catch (Exception e) { other = e; } });
            th2.Start();
            th2.Join();
            Check("request_array_of_another_thread_refused", other is ArgumentException, other == null ? "no exception" : other.GetType().Name);
        }
    }
}
