// Driven over stdin by tests/test_csharp_remote.py: a session behind a real Jupyter Server's lesspy relay, reached by URL.
//   mono RemoteClient.exe
// Each command line runs one check (or a few), printing "CHECK <name> ok" / "CHECK <name> FAIL <details>" and other
// lines the test reads, then "DONE <command>". Commands:
//   connect URL                      Connect<T>(URL) (token in the URL's query, or JUPYTER_TOKEN): the proxy the later commands use
//   connect-uri SERVER SESSION TOKEN Connect<T>(Uri, session, token)
//   basics                           scalar, array, record, stream, Task<T>, the connection's URL
//   threads                          4 threads each calling at once (each its own lane)
//   cancel                           a running Task<T> call cancelled through its token, then a call
//   timeout                          CallTimeout on a slow call, then a call
//   spin                             prints STARTED, calls spin() until the notebook's interrupt ends it, then a call
//   stale                            a result view dies at the thread's next call: the same exception as locally
//   big N                            an N-element float32 array both ways
//   gone                             a call that must throw ServerUnavailableException naming the URL
//   add                              a call that must work (after a reconnect)
//   dropped                          prints STARTED, calls nap(30) while the test cuts the connection: ServerUnavailableException soon
//   silent                           a call while Jupyter Server is stopped (SIGSTOP): ServerUnavailableException within ~6 s
//   refused URL                      Connect(URL) must throw HandshakeException (the token refused)
//   unknown URL                      Connect(URL) of no such session: ServerUnavailableException listing the sessions
//   forbidden URL TEXT               Connect(URL) of a session folder that fails the relay's trust checks: HandshakeException with TEXT
//   untrusted URL                    Connect(URL) of a self-signed https server: refused (the certificate)
//   trusted SERVER SESSION TOKEN PEM [MAX]  Connect(Uri, session, token, certificate): works; a call over MAX bytes is refused
//   wrongcert SERVER SESSION TOKEN PEM the same with a certificate that is not the server's: refused
//   rtt N                            N no-op round trips: prints "RTT median_us p99_us"
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Linq;
using System.Security.Cryptography.X509Certificates;
using System.Threading;
using System.Threading.Tasks;
using LessPy;

public class Point { public double X { get; set; } public double Y { get; set; } }

public interface IRemote : ILessPyConnection
{
    [PythonImport] long add(long a, long b);
    [PythonImport] NdArray plus_one(NdArray a);
    [PythonImport] Point move(Point p, double dx);
    [PythonImport] IEnumerable<long> count(long n);
    [PythonImport("add")] Task<long> add_async(long a, long b);
    [PythonImport] double nap(double seconds);
    [PythonImport("nap")] Task<double> nap_async(double seconds, CancellationToken ct);
    [PythonImport] void spin();
    [PythonImport] void noop();
}

static class RemoteClient
{
    static IRemote api;
    static string url = "";

    static void Check(string name, bool ok, string details = "")
    {
        Console.WriteLine("CHECK " + name + (ok ? " ok" : " FAIL " + details.Replace("\n", " | ")));
    }

    static string Describe(Exception e) { return e == null ? "no exception" : e.GetType().Name + ": " + e.Message; }

    static Exception Catch(Action a)
    {
        try { a(); return null; }
        catch (Exception e) { return e; }
    }

    static int Main(string[] args)
    {
        Console.WriteLine("READY");
        string line;
        while ((line = Console.ReadLine()) != null)
        {
            string[] w = line.Trim().Split(' ');
            if (w[0].Length == 0) continue;
            try { Run(w); }
            catch (Exception e) { Check(w[0] + "_unexpected", false, e.ToString()); }
            Console.WriteLine("DONE " + w[0]);
        }
        return 0;
    }

    static void Run(string[] w)
    {
        switch (w[0])
        {
            case "connect":
            {
                var sw = Stopwatch.StartNew();
                api = LessPythonInvoke.Connect<IRemote>(w[1]);
                url = api.WorkFolder;
                long r = api.add(2, 3);
                Check("connect_" + w[2], r == 5 && !url.Contains("token") && url.StartsWith("http"), r + " " + url);
                Console.WriteLine("URL " + url + " PID " + api.ServerPid + " MS " + sw.ElapsedMilliseconds);
                break;
            }
            case "connect-uri":
            {
                var server = new Uri(w[1]);
                IRemote other = LessPythonInvoke.Connect<IRemote>(server, w[2], w[3]);
                long r = other.add(40, 2);
                Check("connect_uri", r == 42 && other.WorkFolder == w[1] + "lesspy/" + w[2], r + " " + other.WorkFolder);
                other.Dispose();
                break;
            }
            case "basics": Basics(); break;
            case "threads": Threads(); break;
            case "cancel": Cancel(); break;
            case "timeout": TimeoutCheck(); break;
            case "spin":
            {
                Console.WriteLine("STARTED");
                Exception e = Catch(() => api.spin());
                Check("interrupt", e is CallInterruptedException, Describe(e));
                Check("interrupt_then_call", api.add(1, 1) == 2);
                break;
            }
            case "stale": Stale(); break;
            case "big": Big(int.Parse(w[1])); break;
            case "gone":
            {
                Exception e = Catch(() => api.add(1, 2));
                Check("gone_" + w[1], e is ServerUnavailableException && e.Message.Contains(url), Describe(e));
                Console.WriteLine("GONE " + Describe(e).Replace("\n", " | "));
                break;
            }
            case "dropped":
            {
                // a call running when the connection is cut (a proxy dropping it): ServerUnavailableException naming
                // the URL soon after, not when the call would have ended (30 s)
                Console.WriteLine("STARTED");
                var sw = Stopwatch.StartNew();
                Exception e = Catch(() => api.nap(30));
                double s = sw.Elapsed.TotalSeconds;
                Check("dropped_mid_call", e is ServerUnavailableException && e.Message.Contains(url) && s < 10, s.ToString("0.00") + " s " + Describe(e));
                Console.WriteLine("DROPPED " + s.ToString("0.00") + " " + Describe(e).Replace("\n", " | "));
                break;
            }
            case "add":
            {
                long r = api.add(20, 22);
                Check("add_" + w[1], r == 42, r.ToString());
                break;
            }
            case "silent":
            {
                var sw = Stopwatch.StartNew();
                Exception e = Catch(() => api.add(1, 2));
                double s = sw.Elapsed.TotalSeconds;
                Check("silent", e is ServerUnavailableException && e.Message.Contains(url) && s < 7.5, s.ToString("0.00") + " s " + Describe(e));
                Console.WriteLine("SILENT " + s.ToString("0.00") + " " + Describe(e).Replace("\n", " | "));
                break;
            }
            case "refused":
            {
                Exception e = Catch(() => LessPythonInvoke.Connect<IRemote>(w[1]));
                Check("wrong_token", e is HandshakeException && e.Message.Contains("refused the token") && !e.Message.Contains(w[2]), Describe(e));
                Console.WriteLine("REFUSED " + Describe(e).Replace("\n", " | "));
                break;
            }
            case "unknown":
            {
                Exception e = Catch(() => LessPythonInvoke.Connect<IRemote>(w[1]));
                Check("unknown_session", e is ServerUnavailableException && e.Message.Contains(w[2]), Describe(e));
                Console.WriteLine("UNKNOWN " + Describe(e).Replace("\n", " | "));
                break;
            }
            case "forbidden":
            {
                Exception e = Catch(() => LessPythonInvoke.Connect<IRemote>(w[1]));
                Check("untrusted_folder", e is HandshakeException && e.Message.Contains("refused the session") && e.Message.Contains(w[2]), Describe(e));
                Console.WriteLine("FORBIDDEN " + Describe(e).Replace("\n", " | "));
                break;
            }
            case "untrusted":
            {
                Exception e = Catch(() => LessPythonInvoke.Connect<IRemote>(w[1]));
                Check("tls_untrusted", e is ServerUnavailableException && e.Message.Contains("certificate") && e.Message.Contains(w[1].Split('?')[0]), Describe(e));
                break;
            }
            case "trusted":
            {
                var cert = new X509Certificate2(w[4]);
                IRemote tls = LessPythonInvoke.Connect<IRemote>(new Uri(w[1]), w[2], w[3], cert);
                NdArray a = tls.plus_one(NdArray.FromArray(new float[] { 1, 2, 3 }));
                float[] r = a.ToArray<float>();
                Check("tls_trusted", tls.add(1, 2) == 3 && r[2] == 4 && tls.WorkFolder.StartsWith("https://"), tls.WorkFolder);
                if (w.Length > 5)
                {
                    // the relay's max_message (w[5] bytes): a larger call is refused before anything is sent
                    int n = int.Parse(w[5]) / 4 + 16;
                    Exception e = Catch(() => tls.plus_one(NdArray.FromArray(new float[n])));
                    Check("max_message", e is PayloadTooLargeException && ((PayloadTooLargeException)e).Size > int.Parse(w[5]) && tls.add(2, 2) == 4, Describe(e));
                }
                tls.Dispose();
                break;
            }
            case "wrongcert":
            {
                var cert = new X509Certificate2(w[4]);
                Exception e = Catch(() => LessPythonInvoke.Connect<IRemote>(new Uri(w[1]), w[2], w[3], cert));
                Check("tls_other_certificate", e is ServerUnavailableException && e.Message.Contains("not the certificate given to trust"), Describe(e));
                break;
            }
            case "rtt":
            {
                int n = int.Parse(w[1]);
                for (int i = 0; i < 200; i++) api.noop();
                var t = new double[n];
                for (int i = 0; i < n; i++)
                {
                    long s0 = Stopwatch.GetTimestamp();
                    api.noop();
                    t[i] = (Stopwatch.GetTimestamp() - s0) * 1e6 / Stopwatch.Frequency;
                }
                Array.Sort(t);
                Console.WriteLine("RTT " + t[n / 2].ToString("0.0") + " " + t[(int)(n * 0.99)].ToString("0.0"));
                break;
            }
            default: Check("command_" + w[0], false, "unknown command"); break;
        }
    }

    static void Basics()
    {
        Check("scalar", api.add(1L << 40, 1) == (1L << 40) + 1);
        NdArray a = api.plus_one(NdArray.FromArray(new float[] { 1.5f, 2.5f, 3.5f }));
        float[] r = a.ToArray<float>();
        Check("array", r.Length == 3 && r[0] == 2.5f && r[2] == 4.5f, string.Join(",", r));
        Point p = api.move(new Point { X = 1, Y = 2 }, 0.5);
        Check("record", p.X == 1.5 && p.Y == 2, p.X + " " + p.Y);
        List<long> items = api.count(5).ToList();
        Check("stream", items.SequenceEqual(new long[] { 0, 1, 2, 3, 4 }), string.Join(",", items));
        var early = api.count(100).Take(3).ToList();
        Check("stream_closed_early", early.Count == 3 && api.add(1, 1) == 2, string.Join(",", early));
        Task<long> t = api.add_async(7, 8);
        Check("task", t.Wait(30000) && t.Result == 15);
        Check("url", api.WorkFolder == url && api.ServerPid > 0, api.WorkFolder + " " + api.ServerPid);
        Exception e = Catch(() => api.NewRequestArray<float>(4));
        Check("no_request_arrays", e is NotSupportedException, Describe(e));
    }

    static void Threads()
    {
        const int n = 4;
        var barrier = new Barrier(n);
        var errors = new List<string>();
        var threads = new Thread[n];
        var results = new double[n];
        for (int i = 0; i < n; i++)
        {
            int k = i;
            threads[i] = new Thread(() =>
            {
                try
                {
                    barrier.SignalAndWait();
                    results[k] = api.nap(0.3);
                    if (api.add(k, 1) != k + 1) lock (errors) errors.Add("add " + k);
                }
                catch (Exception e) { lock (errors) errors.Add(Describe(e)); }
            });
            threads[i].Start();
        }
        foreach (Thread t in threads) t.Join();
        Check("threads", errors.Count == 0 && results.All(x => x == 0.3), string.Join("; ", errors));
    }

    static void Cancel()
    {
        var cts = new CancellationTokenSource();
        var sw = Stopwatch.StartNew();
        Task<double> t = api.nap_async(2.0, cts.Token);
        Thread.Sleep(300);
        cts.Cancel();
        Exception e = null;
        try { t.Wait(10000); }
        catch (AggregateException a) { e = a.InnerException; }
        double s = sw.Elapsed.TotalSeconds;
        Check("cancel", t.IsCanceled && s < 1.5, s.ToString("0.00") + " s " + t.Status + " " + Describe(e));
        Check("cancel_then_call", api.add(2, 2) == 4);
    }

    static void TimeoutCheck()
    {
        api.CallTimeout = TimeSpan.FromSeconds(1);
        var sw = Stopwatch.StartNew();
        Exception e = Catch(() => api.nap(3.0));
        double s = sw.Elapsed.TotalSeconds;
        Check("timeout", e is CallTimeoutException && s < 2.0, s.ToString("0.00") + " s " + Describe(e));
        api.CallTimeout = TimeSpan.FromSeconds(60);
        Check("timeout_then_call", api.add(3, 3) == 6);
    }

    static void Stale()
    {
        NdArray a = api.plus_one(NdArray.FromArray(new float[] { 1, 2, 3, 4 }));
        float first = a.ToArray<float>()[0];
        api.add(1, 1);
        Exception e = Catch(() => a.ToArray<float>());
        Check("stale_view", first == 2 && e is InvalidOperationException && e.Message.StartsWith("this NdArray is no longer valid"), Describe(e));
    }

    static void Big(int n)
    {
        var data = new float[n];
        for (int i = 0; i < n; i++) data[i] = i % 1000;
        var sw = Stopwatch.StartNew();
        NdArray r = api.plus_one(NdArray.FromArray(data));
        double ms = sw.Elapsed.TotalMilliseconds;
        float[] back = r.ToArray<float>();
        bool ok = back.Length == n;
        for (int i = 0; ok && i < n; i += 997) ok = back[i] == i % 1000 + 1;
        Check("big", ok && back[n - 1] == (n - 1) % 1000 + 1, back.Length + " elements");
        Console.WriteLine("BIG_MS " + ms.ToString("0.0"));
    }
}
