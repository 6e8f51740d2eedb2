// Task<T> methods with a CancellationToken, sync timeouts, and the next call going out at once (issue 7 item 3).
//   mono AsyncClient.exe <work folder>
// Prints CHECK lines; exits 0 only when all passed.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Threading;
using System.Threading.Tasks;
using LessPy;

public interface IAsync : ILessPyConnection
{
    [PythonImport] Task<int> add_ints(int a, int b);
    [PythonImport("add_ints")] int add_ints_sync(int a, int b);
    [PythonImport] Task<string> record(string tag, CancellationToken ct);
    [PythonImport] Task<string> record_after(double seconds, string tag, CancellationToken ct = default(CancellationToken));
    [PythonImport] Task<string> ran();
    [PythonImport] Task<int> sleep_then(double seconds, int value, CancellationToken ct = default(CancellationToken));
    [PythonImport("sleep_then")] int sleep_then_sync(double seconds, int value);
    [PythonImport("sleep_then")] int sleep_then_sync_ct(double seconds, int value, CancellationToken ct);
    [PythonImport] Task spin_forever(string tag, CancellationToken ct);
    [PythonImport("spin_forever")] void spin_forever_sync(string tag);
    [PythonImport] Task<NdArray> fill(int tag, int n);
    [PythonImport("fill")] NdArray fill_sync(int tag, int n);
}

static class AsyncClient
{
    static int failures;

    static void Check(string name, Func<bool> body)
    {
        bool ok;
        string detail = "";
        try { ok = body(); }
        catch (Exception e) { ok = false; detail = e.GetType().Name + ": " + e.Message.Replace("\n", " | "); }
        if (!ok) failures++;
        Console.WriteLine("CHECK " + name + (ok ? " ok" : " FAIL " + detail));
    }

    static bool Eventually(Func<bool> condition)
    {
        var sw = Stopwatch.StartNew();
        while (sw.Elapsed < TimeSpan.FromSeconds(20))
        {
            if (condition()) return true;
            Thread.Sleep(50);
        }
        return false;
    }

    static Exception Fault(Task t)
    {
        try { t.GetAwaiter().GetResult(); return null; }
        catch (Exception e) { return e; }
    }

    static int Main(string[] args)
    {
        var api = LessPythonInvoke.Connect<IAsync>(args[0]);
        api.CallTimeout = TimeSpan.FromSeconds(30);

        Check("async_result", () => api.add_ints(2, 40).Result == 42);
        Check("async_does_not_block", () =>
        {
            Task<int> t = api.sleep_then(0.5, 7);
            bool pending = !t.IsCompleted;                 // 0.5 s in Python: the method returned long before
            return pending && t.Result == 7;
        });
        Check("cancelled_before_start_never_runs", () =>
        {
            var cts = new CancellationTokenSource();
            cts.Cancel();
            Task<string> t = api.record("never", cts.Token);
            Exception e = Fault(t);
            string ran = api.ran().Result;
            return t.IsCanceled && e is OperationCanceledException && !ran.Contains("never");
        });
        Check("cancel_while_running_interrupts_and_next_call_goes_at_once", () =>
        {
            var cts = new CancellationTokenSource();
            Task t = api.spin_forever("a", cts.Token);
            Thread.Sleep(300);
            bool running = !t.IsCompleted;
            cts.Cancel();
            Exception e = Fault(t);
            // the spinning call's lane is set aside; this call takes another lane at once
            api.CallTimeout = TimeSpan.FromSeconds(5);
            int r = api.add_ints_sync(1, 2);
            api.CallTimeout = TimeSpan.FromSeconds(30);
            return running && t.IsCanceled && e is OperationCanceledException && r == 3 && api.ran().Result.Contains("spin-start-a")
                && Eventually(() => api.ran().Result.Contains("spin-end-a"));     // the endless loop was interrupted
        });
        Check("sync_timeout_then_next_call", () =>
        {
            api.CallTimeout = TimeSpan.FromMilliseconds(300);
            Exception e = null;
            try { api.sleep_then_sync(2.0, 1); } catch (Exception x) { e = x; }
            api.CallTimeout = TimeSpan.FromSeconds(5);
            int r = api.add_ints_sync(2, 3);
            api.CallTimeout = TimeSpan.FromSeconds(30);
            return e is CallTimeoutException && e.Message.Contains("sleep_then") && e.Message.Contains("CallTimeout") && r == 5;
        });
        Check("sync_call_with_a_token", () =>
        {
            var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
            Exception e = null;
            try { api.sleep_then_sync_ct(2.0, 1, cts.Token); } catch (Exception x) { e = x; }
            return e is OperationCanceledException && api.sleep_then_sync_ct(0.0, 6, CancellationToken.None) == 6;
        });
        Check("sync_timeout_interrupts_endless_call", () =>
        {
            api.CallTimeout = TimeSpan.FromMilliseconds(300);
            Exception e = null;
            try { api.spin_forever_sync("b"); } catch (Exception x) { e = x; }
            api.CallTimeout = TimeSpan.FromSeconds(30);
            return e is CallTimeoutException && api.add_ints_sync(4, 5) == 9 && Eventually(() => api.ran().Result.Contains("spin-end-b"));
        });
        Check("cancel_during_sleep_recorded_call_never_finishes", () =>
        {
            var cts = new CancellationTokenSource();
            Task<string> t = api.record_after(1.0, "late", cts.Token);
            Thread.Sleep(200);
            cts.Cancel();
            Exception e = Fault(t);
            Thread.Sleep(1500);
            return e is OperationCanceledException && !api.ran().Result.Contains("late");
        });
        Check("async_ndarray_result", () =>
        {
            NdArray a = api.fill(5, 1000).Result;
            var s = a.AsSpan<int>();
            for (int i = 0; i < s.Length; i++) if (s[i] != 5) return false;
            return s.Length == 1000;
        });
        Check("set_aside_lanes_come_back", () =>
        {
            // the abandoned calls above have had their late replies: their lanes are reused, no new lane is opened
            Thread.Sleep(2500);                       // the last abandoned call (a 2 s sleep) has ended by now
            int before = System.IO.Directory.GetFiles(args[0], "lane-*.req.mmf").Length;
            var tasks = new List<Task<int>>();
            for (int i = 0; i < before; i++) tasks.Add(api.sleep_then(0.3, i));     // every lane busy at once
            for (int i = 0; i < tasks.Count; i++) if (tasks[i].Result != i) return false;
            for (int i = 0; i < 40; i++) if (api.add_ints_sync(i, 1) != i + 1) return false;
            int after = System.IO.Directory.GetFiles(args[0], "lane-*.req.mmf").Length;
            return after == before && before < 16;
        });
        Check("many_async_calls_at_once", () =>
        {
            var tasks = new List<Task<int>>();
            for (int i = 0; i < 24; i++) tasks.Add(api.sleep_then(0.2, i));
            for (int i = 0; i < tasks.Count; i++) if (tasks[i].Result != i) return false;
            return true;
        });
        Check("mixed_threads_sync_async_and_cancel", () =>
        {
            // sync and async calls from several threads, with cancellations in between: every result is the caller's own
            int bad = 0, cancelled = 0;
            string error = null;
            var threads = new List<Thread>();
            for (int t = 0; t < 6; t++)
            {
                int me = t;
                var th = new Thread(() =>
                {
                    for (int i = 0; i < 120; i++)
                    {
                        int tag = me * 100000 + i;
                        try
                        {
                            if (i % 6 == 5)
                            {
                                var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(15));
                                try { api.sleep_then(0.2, tag, cts.Token).GetAwaiter().GetResult(); }
                                catch (OperationCanceledException) { Interlocked.Increment(ref cancelled); }
                                continue;
                            }
                            NdArray r = i % 2 == 0 ? api.fill_sync(tag, 512) : api.fill(tag, 512).Result;
                            var sp = r.AsSpan<int>();
                            for (int k = 0; k < sp.Length; k++) if (sp[k] != tag) { Interlocked.Increment(ref bad); break; }
                        }
                        catch (Exception e) { if (error == null) error = e.ToString(); Interlocked.Increment(ref bad); }
                    }
                });
                threads.Add(th);
                th.Start();
            }
            foreach (var th in threads) th.Join();
            if (error != null) Console.WriteLine("first error: " + error.Replace("\n", " | "));
            return bad == 0 && cancelled == 6 * 20;
        });
        Check("more_async_calls_than_lanes_never_block_the_caller", () =>
        {
            // 24 one-second calls, 16 lanes: had the caller waited for a lane, the first calls would be done by now
            var tasks = new List<Task<int>>();
            for (int i = 0; i < 24; i++) tasks.Add(api.sleep_then(1.0, i));
            bool noneDone = tasks.TrueForAll(t => !t.IsCompleted);
            for (int i = 0; i < tasks.Count; i++) if (tasks[i].Result != i) return false;
            return noneDone;
        });
        Check("dispose_then_disposed", () =>
        {
            api.Dispose();
            api.Dispose();
            try { api.add_ints_sync(1, 1); return false; }
            catch (ObjectDisposedException) { return true; }
        });
        Check("dispose_during_a_call", () =>
        {
            // Dispose never writes into what a running call reads; the running call ends with ObjectDisposedException
            var other = LessPythonInvoke.Connect<IAsync>(args[0]);
            Task t = other.spin_forever("d", CancellationToken.None);
            Thread.Sleep(300);
            other.Dispose();
            bool ended = ((IAsyncResult)t).AsyncWaitHandle.WaitOne(10000);
            Exception e = Fault(t);
            return ended && e is ObjectDisposedException;
        });
        return failures == 0 ? 0 : 1;
    }
}
