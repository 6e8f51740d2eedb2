// Issue 14 (Trust), the C# client's robustness: lane opening honours CallTimeout and the token and tells a live
// server that does not answer from a dead one (item 12); open streams never silently hold every lane (item 13); a
// full file system or a truncated lane file is an error, never SIGBUS (item 9); a cancelled stream stops, a null
// int[][] row stays null, a lone surrogate is an argument error (item 8).
// Usage: TrustRobustClient.exe MODE FOLDER. Prints "CHECK name ok" or "CHECK name FAIL: why"; exits 1 on a failure.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Linq;
using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;
using System.Threading;
using LessPy;

public interface ITrust : IDisposable
{
    [PythonImport] int add_ints(int a, int b);
    [PythonImport("add_ints")] int add_ints_ct(int a, int b, CancellationToken ct);
    [PythonImport] NdArray big_array(int megabytes);
    [PythonImport] long hold_gil(long n);
    [PythonImport] IEnumerable<int> numbers(int n);
    [PythonImport("numbers")] IEnumerable<int> numbers_ct(int n, CancellationToken ct);
    [PythonImport] string[] events();
    [PythonImport] void clear_events();
    [PythonImport] string[] row_kinds(int[][] rows);
    [PythonImport] int[][] echo_rows(int[][] rows);
    [PythonImport] int text_length(string s);
    [PythonImport("text_length")] int list_length(List<string> items);
    [PythonImport] long array_size(NdArray a);
}

public static class TrustRobustClient
{
    static int failures;

    [DllImport("libc", SetLastError = true)] static extern int kill(int pid, int sig);
    const int SIGSTOP = 19, SIGCONT = 18;

    static void Check(string name, bool ok, string detail = "")
    {
        Console.WriteLine("CHECK " + name + (ok ? " ok" : " FAIL: " + detail.Replace("\n", " | ")));
        if (!ok) failures++;
    }

    static string Describe(Exception e) { return e == null ? "no exception" : e.GetType().Name + ": " + e.Message; }

    /// <summary>Runs <paramref name="body"/> on a new thread (one that holds no lane) and returns what it threw and how long it took.</summary>
    static Exception OnNewThread(Action body, out double seconds)
    {
        Exception caught = null;
        var sw = Stopwatch.StartNew();
        var t = new Thread(() =>
        {
            try { body(); }
            catch (Exception e) { caught = e; }
        });
        t.Start();
        t.Join();
        seconds = sw.Elapsed.TotalSeconds;
        return caught;
    }

    public static int Main(string[] args)
    {
        string mode = args[0], folder = args[1];
        switch (mode)
        {
            case "laneopen": LaneOpen(folder); break;
            case "streams": Streams(folder); break;
            case "diskfull": DiskFull(folder); break;
            case "truncated": Truncated(folder); break;
            case "values": Values(folder); break;
            case "soak": Soak(folder, int.Parse(args[2]), int.Parse(args[3])); break;
            default: Console.WriteLine("unknown mode " + mode); return 2;
        }
        return failures == 0 ? 0 : 1;
    }

    // ---------------------------------------------------------------- item 12

    static void LaneOpen(string folder)
    {
        var api = LessPythonInvoke.Connect<ITrust>(folder);
        var conn = (ILessPyConnection)api;
        conn.CallTimeout = TimeSpan.FromSeconds(2);
        int pid = conn.ServerPid;
        NdArray held = api.big_array(1);     // this thread holds the first lane: another thread's call opens a new one
        Exception e;
        double s;
        var streamCts = new CancellationTokenSource();
        IEnumerator<int> stream = null;
        var opener = new Thread(() => { stream = api.numbers_ct(100, streamCts.Token).GetEnumerator(); stream.MoveNext(); });
        opener.Start();
        opener.Join();                       // a stream open on a lane of its own, its first item read
        kill(pid, SIGSTOP);
        try
        {
            streamCts.Cancel();
            var sw = Stopwatch.StartNew();
            e = null;
            try { stream.MoveNext(); }
            catch (Exception x) { e = x; }
            Check("cancelled_stream_ends_at_once_on_a_stopped_server", e is OperationCanceledException && sw.Elapsed.TotalSeconds < 1,
                sw.Elapsed.TotalSeconds.ToString("0.00") + " s, " + Describe(e));
            e = OnNewThread(() => api.add_ints(1, 2), out s);
            Check("stopped_server_lane_open_ends_within_call_timeout", e is CallTimeoutException && s < 4.5, s.ToString("0.00") + " s, " + Describe(e));
            Check("stopped_server_is_alive_but_not_answering",
                e != null && e.Message.Contains("alive but not answering") && e.Message.Contains("pid " + pid) && e.Message.Contains("kill -CONT")
                && !e.Message.Contains("crashed"), Describe(e));
            e = OnNewThread(() =>
            {
                using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300))) api.add_ints_ct(1, 2, cts.Token);
            }, out s);
            Check("stopped_server_token_cancels_lane_open", e is OperationCanceledException && s >= 0.25 && s < 1.5,
                s.ToString("0.00") + " s, " + Describe(e));
        }
        finally { kill(pid, SIGCONT); }
        e = OnNewThread(() => { if (api.add_ints(2, 3) != 5) throw new Exception("wrong sum"); }, out s);
        Check("resumed_server_answers", e == null, Describe(e));

        // a server busy in a call that holds the GIL: opening a lane says it is alive and busy, within CallTimeout
        var busy = LessPythonInvoke.Connect<ITrust>(folder);
        ((ILessPyConnection)busy).CallTimeout = TimeSpan.FromSeconds(120);
        var other = LessPythonInvoke.Connect<ITrust>(folder);
        ((ILessPyConnection)other).CallTimeout = TimeSpan.FromSeconds(2);
        NdArray held2 = other.big_array(1);  // this thread holds other's first lane
        Exception busyError = null;
        var spinner = new Thread(() =>
        {
            try { busy.hold_gil(500000000L); }
            catch (Exception x) { busyError = x; }
        });
        spinner.Start();
        Thread.Sleep(700);
        e = OnNewThread(() => other.add_ints(1, 2), out s);
        Check("gil_holding_server_lane_open_ends_within_call_timeout", e is CallTimeoutException && s < 4.5, s.ToString("0.00") + " s, " + Describe(e));
        Check("gil_holding_server_is_alive_but_not_answering",
            e != null && e.Message.Contains("alive but not answering") && e.Message.Contains("GIL") && !e.Message.Contains("crashed"), Describe(e));
        spinner.Join();
        Check("gil_holding_call_itself_completes", busyError == null, Describe(busyError));
        e = OnNewThread(() => { if (other.add_ints(2, 3) != 5) throw new Exception("wrong sum"); }, out s);
        Check("busy_server_answers_afterwards", e == null, Describe(e));

        // a server that is gone is not "alive but not answering"
        kill(pid, 9);
        Thread.Sleep(300);
        e = OnNewThread(() => other.add_ints(1, 2), out s);
        Check("killed_server_has_stopped_or_crashed", e is ServerUnavailableException && e.Message.Contains("stopped or crashed")
            && !e.Message.Contains("alive") && s < 2.5, s.ToString("0.00") + " s, " + Describe(e));
        GC.KeepAlive(held);
        GC.KeepAlive(held2);
    }

    // ---------------------------------------------------------------- item 13

    [MethodImpl(MethodImplOptions.NoInlining)]
    static bool OpenAndDrop(ITrust api, out Exception error)
    {
        error = null;
        try
        {
            IEnumerator<int> e = api.numbers(50).GetEnumerator();
            return e.MoveNext() && e.Current == 0;
        }
        catch (Exception x)
        {
            error = x;
            return false;
        }
    }

    static void Streams(string folder)
    {
        var api = LessPythonInvoke.Connect<ITrust>(folder);
        ((ILessPyConnection)api).CallTimeout = TimeSpan.FromSeconds(5);
        var kept = new List<IEnumerator<int>>();
        for (int i = 0; i < 16; i++)
        {
            IEnumerator<int> en = api.numbers(100).GetEnumerator();
            en.MoveNext();
            kept.Add(en);
        }
        Exception e;
        double s;
        int sum = 0;
        e = OnNewThread(() => sum = api.add_ints(1, 2), out s);
        Check("sixteen_open_streams_leave_lanes_for_calls", e == null && sum == 3 && s < 2, s.ToString("0.00") + " s, " + Describe(e));

        Exception full = null;
        var sw = Stopwatch.StartNew();
        for (int i = 0; i < 100 && full == null; i++)
        {
            sw.Restart();
            try
            {
                IEnumerator<int> en = api.numbers(100).GetEnumerator();
                en.MoveNext();
                kept.Add(en);
            }
            catch (Exception x) { full = x; }
        }
        double failed = sw.Elapsed.TotalSeconds;
        Check("streams_fill_the_promised_64_lanes", kept.Count == 64, kept.Count + " streams open");
        Check("lanes_held_by_streams_fail_fast", full is LanesExhaustedException && failed < 2.5, failed.ToString("0.00") + " s, " + Describe(full));
        Check("lanes_held_by_streams_message_says_what_to_do",
            full != null && full.Message.Contains("numbers x64") && full.Message.Contains("enumerator") && full.Message.Contains("dispose"), Describe(full));
        e = OnNewThread(() => api.add_ints(1, 2), out s);
        Check("a_call_fails_fast_too", e is LanesExhaustedException && s < 2.5, s.ToString("0.00") + " s, " + Describe(e));
        foreach (var en in kept) en.Dispose();
        kept.Clear();
        e = OnNewThread(() => sum = api.add_ints(2, 2), out s);
        Check("disposed_streams_give_their_lanes_back", e == null && sum == 4, Describe(e));

        // enumerators dropped without Dispose (unreachable): their lanes are taken over, not held for good
        int ok = 0;
        Exception first = null;
        for (int i = 0; i < 150; i++)
        {
            Exception x;
            if (OpenAndDrop(api, out x)) ok++;
            else if (first == null) first = x;
        }
        Check("abandoned_streams_lanes_are_taken_over", ok == 150, ok + " of 150 streams opened; " + Describe(first));
        e = OnNewThread(() => sum = api.add_ints(3, 3), out s);
        Check("calls_work_after_abandoned_streams", e == null && sum == 6 && s < 2.5, s.ToString("0.00") + " s, " + Describe(e));
        string[] ev = api.events();
        int closed = ev.Count(x => x == "numbers(50) closed");
        Check("abandoned_generators_are_closed", closed >= 150 - 64, closed + " of 150 generators closed");
    }

    /// <summary>
    /// Threads that open streams and drop them undisposed, dispose others early, run some to the end and make calls,
    /// all on one proxy: every item and result is right, nothing waits for CallTimeout, no lane is lost.
    /// </summary>
    static void Soak(string folder, int threads, int rounds)
    {
        var api = LessPythonInvoke.Connect<ITrust>(folder);
        ((ILessPyConnection)api).CallTimeout = TimeSpan.FromSeconds(20);
        int bad = 0, done = 0;
        string firstError = null;
        var sw = Stopwatch.StartNew();
        var all = new List<Thread>();
        for (int t = 0; t < threads; t++)
        {
            int seed = t;
            var th = new Thread(() =>
            {
                var rnd = new Random(seed);
                for (int i = 0; i < rounds; i++)
                {
                    try
                    {
                        int n = 1 + rnd.Next(20);
                        switch (rnd.Next(4))
                        {
                            case 0:
                            {
                                Exception x;
                                if (!OpenAndDrop(api, out x)) throw x ?? new Exception("an abandoned stream's first item was wrong");
                                break;
                            }
                            case 1:
                                using (var en = api.numbers(n).GetEnumerator())
                                {
                                    int k = 0;
                                    while (k < n / 2 && en.MoveNext())
                                    {
                                        if (en.Current != k) throw new Exception("item " + en.Current + " where " + k + " was due");
                                        k++;
                                    }
                                }
                                break;
                            case 2:
                                if (!api.numbers(n).SequenceEqual(Enumerable.Range(0, n))) throw new Exception("a whole stream was wrong");
                                break;
                            default:
                                if (api.add_ints(seed, i) != seed + i) throw new Exception("a wrong sum");
                                break;
                        }
                        Interlocked.Increment(ref done);
                    }
                    catch (Exception e)
                    {
                        if (Interlocked.Increment(ref bad) == 1) firstError = Describe(e);
                    }
                }
            });
            all.Add(th);
            th.Start();
        }
        foreach (var th in all) th.Join();
        Check("soak_streams_and_calls_all_right", bad == 0 && done == threads * rounds, done + " done, " + bad + " failed; first: " + firstError);
        Check("soak_no_wait_for_call_timeout", sw.Elapsed.TotalSeconds < 20 * 0.9 * Math.Max(1, threads * rounds / 400),
            sw.Elapsed.TotalSeconds.ToString("0.0") + " s");
        Check("soak_calls_work_after", api.add_ints(40, 2) == 42);
    }

    // ---------------------------------------------------------------- item 9

    static void DiskFull(string folder)
    {
        var api = LessPythonInvoke.Connect<ITrust>(folder);
        var conn = (ILessPyConnection)api;
        Check("small_call_before", api.add_ints(1, 2) == 3);
        var big = NdArray.FromArray(new byte[100 << 20], 100 << 20);
        Exception e = null;
        try { api.array_size(big); }
        catch (Exception x) { e = x; }
        Console.WriteLine("disk full: " + Describe(e));
        Check("full_file_system_is_an_error", e is LessPyException && e.Message.Contains("full") && e.Message.Contains(Path.GetDirectoryName(Path.GetFullPath(folder + "/x"))),
            Describe(e));
        Check("server_keeps_serving_after_disk_full", api.add_ints(2, 3) == 5);
        e = null;
        try
        {
            NdArray inPlace = conn.NewRequestArray<byte>(100 << 20);
            inPlace.AsSpan<byte>();
        }
        catch (Exception x) { e = x; }
        Check("full_file_system_in_place_array_is_an_error", e is LessPyException && e.Message.Contains("full"), Describe(e));
        Check("server_keeps_serving_after_in_place_disk_full", api.add_ints(3, 4) == 7);
        var small = NdArray.FromArray(new byte[1 << 20], 1 << 20);
        Check("a_smaller_array_still_goes", api.array_size(small) == 1 << 20);
    }

    static void Truncated(string folder)
    {
        var api = LessPythonInvoke.Connect<ITrust>(folder);
        int pid = ((ILessPyConnection)api).ServerPid;
        NdArray first = api.big_array(2);
        Check("big_reply", first.Length == (2 << 20) / 8);
        string resp = Directory.GetFiles(folder, "lane-*.resp.mmf").Single();
        string req = resp.Replace(".resp.mmf", ".req.mmf");
        long size = new FileInfo(resp).Length;
        kill(pid, SIGSTOP);
        Exception e = null;
        try
        {
            // the stopped server "answers" the next call with the same reply header, in a file cut to 8 KiB
            ulong seq;
            using (var f = new FileStream(req, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete))
            {
                var b = new byte[8];
                f.Seek(16, SeekOrigin.Begin);
                f.Read(b, 0, 8);
                seq = BitConverter.ToUInt64(b, 0);
            }
            using (var f = new FileStream(resp, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete))
            {
                f.Seek(16, SeekOrigin.Begin);
                f.Write(BitConverter.GetBytes(seq + 1), 0, 8);
                f.SetLength(8192);
            }
            try
            {
                NdArray r = api.big_array(2);
                double[] copy = r.ToArray<double>();       // reads the whole reply: past the file's end without the check
                Console.WriteLine("read " + copy.Length + " elements");
            }
            catch (Exception x) { e = x; }
        }
        finally
        {
            using (var f = new FileStream(resp, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete)) f.SetLength(size);
            kill(pid, SIGCONT);
        }
        Check("truncated_reply_file_is_an_error", e is ProtocolException && e.Message.Contains("truncated"), Describe(e));
        Check("calls_work_after_truncated_reply", api.add_ints(1, 2) == 3);
    }

    // ---------------------------------------------------------------- item 8

    static void Values(string folder)
    {
        var api = LessPythonInvoke.Connect<ITrust>(folder);
        string[] kinds = api.row_kinds(new int[][] { new[] { 1, 2 }, null, new int[0] });
        Check("null_row_arrives_as_none", kinds.SequenceEqual(new[] { "[1, 2]", "None", "[]" }), string.Join(" ", kinds));
        kinds = api.row_kinds(new int[][] { new[] { 1 }, new int[0] });
        Check("rows_without_null_unchanged", kinds.SequenceEqual(new[] { "[1]", "[]" }), string.Join(" ", kinds));
        Exception e = null;
        int[][] back = null;
        try { back = api.echo_rows(new int[][] { new[] { 7 }, null }); }
        catch (Exception x) { e = x; }
        // a null row comes back null where the server can say so; never as an empty array
        bool roundTrip = back != null && back.Length == 2 && back[0].SequenceEqual(new[] { 7 }) && back[1] == null;
        bool clearError = e is ResultMismatchException && e.Message.Contains("row 1");
        Check("null_row_comes_back_null_or_a_clear_error", roundTrip || clearError,
            back != null ? "got " + string.Join(" | ", back.Select(r => r == null ? "null" : "[" + string.Join(",", r) + "]")) : Describe(e));
        Console.WriteLine("null row round trip: " + (roundTrip ? "null" : Describe(e)));

        e = null;
        try { api.text_length("ab\uD800cd"); }
        catch (Exception x) { e = x; }
        Check("lone_surrogate_is_an_argument_error", e is ArgumentMismatchException && e.Message.Contains("parameter s") && e.Message.Contains("index 2"),
            Describe(e));
        e = null;
        try { api.list_length(new List<string> { "fine", "x\uDC00" }); }
        catch (Exception x) { e = x; }
        Check("lone_surrogate_in_a_list_is_an_argument_error", e is ArgumentMismatchException && e.Message.Contains("parameter items")
            && e.Message.Contains("index 1"), Describe(e));
        Check("calls_work_after_surrogates", api.text_length("ok \U0001F600") == 4);

        // a cancelled stream delivers nothing more, even items that are ready, and closes its generator
        api.clear_events();
        int delivered = 0;
        e = null;
        using (var cts = new CancellationTokenSource())
        {
            var en = api.numbers_ct(1000, cts.Token).GetEnumerator();
            en.MoveNext();
            en.MoveNext();
            cts.Cancel();
            try
            {
                while (en.MoveNext()) delivered++;
            }
            catch (Exception x) { e = x; }
            en.Dispose();
        }
        Check("cancelled_stream_delivers_nothing_more", delivered == 0 && e is OperationCanceledException, delivered + " items, " + Describe(e));
        string[] ev = api.events();
        for (int i = 0; i < 100 && !ev.Contains("numbers(1000) closed"); i++)
        {
            Thread.Sleep(20);                  // the close goes out without waiting for its answer
            ev = api.events();
        }
        Check("cancelled_stream_closes_its_generator", ev.Contains("numbers(1000) closed"), string.Join(",", ev));
        Check("calls_work_after_cancelled_stream", api.add_ints(1, 1) == 2);
    }
}
