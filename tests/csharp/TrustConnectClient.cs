// Issue 14 (Trust), item 12's last wait: connecting to the notify socket honours CallTimeout and the token. A stopped
// (SIGSTOP) server's listen queue fills with the lane openings that timed out (the kernel keeps each until the server
// accepts it); a blocking connect() to a full queue then waits until the server resumes. Every lane opening here must
// end within CallTimeout as "alive but not answering", a token as a cancellation, and a fresh Connect within its 10 s.
// Usage: TrustConnectClient.exe stopped FOLDER [CALLS], or TrustConnectClient.exe init PYTHON MODULE (Initialize, whose
// lesspy_work/ beside this program is served by a stopped server with a full listen queue), or TrustConnectClient.exe
// connect FOLDER (a folder whose notify.port names a TCP port nobody accepts on, its queue full). Prints "CHECK name ok" or "CHECK name FAIL: why";
// exits 1 on a failure. A call that does not end within 5 s is reported and the program exits at once (the hang).
using System;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Threading;
using LessPy;

public interface ITrustConnect : IDisposable
{
    [PythonImport] int add_ints(int a, int b);
    [PythonImport("add_ints")] int add_ints_ct(int a, int b, CancellationToken ct);
    [PythonImport] NdArray big_array(int megabytes);
}

public static class TrustConnectClient
{
    static int failures;

    [DllImport("libc", SetLastError = true)] static extern int kill(int pid, int sig);
    const int SIGSTOP = 19, SIGCONT = 18;

    static void Check(string name, bool ok, string detail = "")
    {
        Console.WriteLine("CHECK " + name + (ok ? " ok" : " FAIL: " + detail.Replace("\n", " | ")));
        Console.Out.Flush();
        if (!ok) failures++;
    }

    static string Describe(Exception e) { return e == null ? "no exception" : e.GetType().Name + ": " + e.Message; }

    /// <summary>
    /// Runs <paramref name="body"/> on a new thread (one that holds no lane, so its call opens a new lane) and returns
    /// what it threw and how long it took. A call still running after <paramref name="limit"/> s is the hang this test
    /// looks for: it is reported and the process exits.
    /// </summary>
    static Exception OnNewThread(string name, Action body, double limit, out double seconds)
    {
        Exception caught = null;
        var sw = Stopwatch.StartNew();
        var t = new Thread(() =>
        {
            try { body(); }
            catch (Exception e) { caught = e; }
        });
        t.IsBackground = true;
        t.Start();
        if (!t.Join(TimeSpan.FromSeconds(limit)))
        {
            Check(name, false, "still running after " + limit + " s: the lane opening hangs");
            Environment.Exit(1);
        }
        seconds = sw.Elapsed.TotalSeconds;
        return caught;
    }

    public static int Main(string[] args)
    {
        string mode = args[0], folder = args[1];
        int calls = mode == "stopped" && args.Length > 2 ? int.Parse(args[2]) : 100;
        switch (mode)
        {
            case "stopped": Stopped(folder, calls); break;
            case "init": Init(args[1], args[2]); break;
            case "connect": ConnectOnly(folder); break;
            default: Console.WriteLine("unknown mode " + mode); return 2;
        }
        return failures == 0 ? 0 : 1;
    }

    /// <summary>
    /// Initialize finds its folder's server (of the same module) stopped with a full listen queue (the test filled it):
    /// it ends within its 10 s start timeout plus a second's probe, neither hanging nor starting a second server.
    /// </summary>
    static void Init(string python, string module)
    {
        double s;
        Exception e = OnNewThread("initialize_ends", () => LessPythonInvoke.Initialize<ITrustConnect>(python, module, keepAlive: true).Dispose(),
            40, out s);
        Console.WriteLine("INFO Initialize: " + Describe(e));
        Check("full_queue_initialize_ends_within_its_start_timeout", e is ServerUnavailableException && s < 15,
            s.ToString("0.00") + " s, " + Describe(e));
        Check("full_queue_initialize_says_the_server_runs_but_does_not_answer", e != null && e.Message.Contains("is running but did not complete")
            && e.Message.Contains("alive but not answering") && !e.Message.Contains("crashed"), Describe(e));
    }

    /// <summary>Connect to a TCP port whose listen queue is full (the managed Socket path): ends within its 10 s.</summary>
    static void ConnectOnly(string folder)
    {
        double s;
        Exception e = OnNewThread("connect_ends", () => LessPythonInvoke.Connect<ITrustConnect>(folder).Dispose(), 40, out s);
        Console.WriteLine("INFO Connect: " + Describe(e));
        Check("tcp_full_queue_connect_ends_within_its_start_timeout", e is ServerUnavailableException && s < 15,
            s.ToString("0.00") + " s, " + Describe(e));
        Check("tcp_full_queue_connect_is_not_answering", e != null && e.Message.Contains("not answering") && e.Message.Contains("127.0.0.1:"),
            Describe(e));
    }

    static void Stopped(string folder, int calls)
    {
        var api = LessPythonInvoke.Connect<ITrustConnect>(folder);
        var conn = (ILessPyConnection)api;
        conn.CallTimeout = TimeSpan.FromMilliseconds(200);
        int pid = conn.ServerPid;
        NdArray held = api.big_array(1);     // this thread holds the first lane: each other thread's call opens a new one
        Exception e;
        double s;
        kill(pid, SIGSTOP);
        try
        {
            int timedOut = 0, slow = 0, wrong = 0;
            double slowest = 0;
            string firstWrong = null;
            Exception last = null;
            for (int i = 0; i < calls; i++)
            {
                e = OnNewThread("call_" + i + "_ends", () => api.add_ints(1, 2), 5, out s);
                slowest = Math.Max(slowest, s);
                last = e;
                if (s >= 1.0) slow++;
                bool ok = e is CallTimeoutException && e.Message.Contains("alive but not answering") && e.Message.Contains("pid " + pid)
                    && e.Message.Contains("kill -CONT") && !e.Message.Contains("crashed");
                if (ok) timedOut++;
                else
                {
                    wrong++;
                    if (firstWrong == null) firstWrong = "call " + i + ": " + Describe(e);
                }
            }
            Console.WriteLine("INFO the last call: " + Describe(last));
            Check("every_lane_opening_ends_within_a_second", slow == 0, slow + " of " + calls + " took 1 s or more (slowest "
                + slowest.ToString("0.00") + " s)");
            Check("every_lane_opening_is_a_call_timeout_not_answering", timedOut == calls, wrong + " of " + calls + " were not; first: " + firstWrong);

            // the listen queue is full now: the connect itself must give way to a token
            e = OnNewThread("token_ends", () =>
            {
                conn.CallTimeout = TimeSpan.FromSeconds(30);
                using (var cts = new CancellationTokenSource(TimeSpan.FromMilliseconds(300))) api.add_ints_ct(1, 2, cts.Token);
            }, 5, out s);
            conn.CallTimeout = TimeSpan.FromMilliseconds(200);
            Check("full_queue_token_cancels_lane_open", e is OperationCanceledException && s >= 0.25 && s < 1.5,
                s.ToString("0.00") + " s, " + Describe(e));

            // a new connection (Connect's first lane) waits its own 10 s, not forever, and says the server is alive
            e = OnNewThread("connect_ends", () => LessPythonInvoke.Connect<ITrustConnect>(folder).Dispose(), 25, out s);
            Console.WriteLine("INFO Connect: " + Describe(e));
            Check("full_queue_connect_ends_within_its_start_timeout", e is ServerUnavailableException && s < 15,
                s.ToString("0.00") + " s, " + Describe(e));
            Check("full_queue_connect_is_alive_but_not_answering", e != null && e.Message.Contains("alive but not answering")
                && !e.Message.Contains("crashed"), Describe(e));
        }
        finally { kill(pid, SIGCONT); }
        e = OnNewThread("resumed_call_ends", () => { if (api.add_ints(2, 3) != 5) throw new Exception("wrong sum"); }, 15, out s);
        if (e is CallTimeoutException)   // the resumed server may still be accepting the queued connections: once more
            e = OnNewThread("resumed_call_ends", () => { conn.CallTimeout = TimeSpan.FromSeconds(10); if (api.add_ints(2, 3) != 5) throw new Exception("wrong sum"); }, 15, out s);
        Check("resumed_server_answers", e == null, Describe(e));
        GC.KeepAlive(held);
        api.Dispose();
    }
}
