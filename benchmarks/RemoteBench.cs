// RemoteBench.exe: lesspy through Jupyter Server (the relay) next to its floor, a bare websocket echo on the same
// server (remote_echo.py), and next to Jupyter Server's own kernel messaging. Built by benchmarks/run.py from
// LessPy's sources (csharp/LessPy/*.cs) plus this file and Measure.cs, so that the echo is driven through the
// library's own RemoteLane (internal), the same code path as the calls; the calls go through the public API.
//
//   mono RemoteBench.exe remote url=U echo=E small=N big=N n=N [connects=N] [prefix=P]
//                                                                    lesspy by URL vs the echo, alternating blocks;
//                                                                    results named remote_<P>noop, ...
//   mono RemoteBench.exe channels url=WS token=T calls=N              kernel_info over /api/kernels/<id>/channels
//
// Prints RESULT / VALUE / SKIP / INFO lines for run.py (see Bench.cs); never judges the numbers.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Net.WebSockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using LessPy;
using static Measure;

public interface IRemoteBench
{
    [PythonImport] void noop();
    [PythonImport] int add_ints(int a, int b);
    [PythonImport] NdArray inc_ndarray(NdArray a);
}

static unsafe class RemoteBench
{
    static Dictionary<string, string> Opt = new Dictionary<string, string>();

    static int Main(string[] args)
    {
        if (args.Length < 1) { Console.Error.WriteLine("usage: mono RemoteBench.exe remote|channels key=value..."); return 2; }
        for (int i = 1; i < args.Length; i++)
        {
            int eq = args[i].IndexOf('=');
            if (eq <= 0) { Console.Error.WriteLine("bad option " + args[i] + " (expected key=value)"); return 2; }
            Opt[args[i].Substring(0, eq)] = args[i].Substring(eq + 1);
        }
        try
        {
            if (args[0] == "remote") return Remote();
            if (args[0] == "channels") return Channels();
        }
        catch (Exception e)
        {
            Console.Error.WriteLine("RemoteBench.exe " + args[0] + " failed: " + e);
            return 1;
        }
        Console.Error.WriteLine("unknown mode " + args[0]);
        return 2;
    }

    static string S(string key) { string v; if (!Opt.TryGetValue(key, out v)) throw new ArgumentException("missing option " + key + "="); return v; }
    static int I(string key, int dflt) { string v; return Opt.TryGetValue(key, out v) ? int.Parse(v, Inv) : dflt; }

    // ------------------------------------------------------------------ lesspy by URL vs the echo

    static int Remote()
    {
        int smallCalls = I("small", 3000), bigCalls = I("big", 15), n = I("n", 4096);
        string prefix = Opt.ContainsKey("prefix") ? Opt["prefix"] : "";
        bool ok = true;
        var bigSrc = new float[n * n];
        for (int i = 0; i < bigSrc.Length; i++) bigSrc[i] = i % 1000;
        GCHandle pin = GCHandle.Alloc(bigSrc, GCHandleType.Pinned);
        byte* bigP = (byte*)pin.AddrOfPinnedObject();
        var big = NdArray.FromArray(bigSrc, n, n);

        IRemoteBench api = LessPythonInvoke.Connect<IRemoteBench>(S("url"));
        var echo = new EchoPeer(S("echo"));
        try
        {
            // the same frames the calls send: the echo carries requests as long as the calls' (bytes are bytes)
            int smallLen = 32;
            long bigBytes = (long)n * n * 4, bigLen = bigBytes + 192;
            for (int i = 0; i < 500; i++) { api.noop(); echo.RoundTrip(null, 0, smallLen); }
            if (api.add_ints(2, 40) != 42) { Console.Error.WriteLine("CHECK FAILED: remote add_ints(2, 40) != 42"); ok = false; }

            var echoSmall = new List<double>(smallCalls);
            var noop = new List<double>(smallCalls);
            var add = new List<double>(smallCalls);
            const int Blocks = 10;
            int perBlock = Math.Max(1, smallCalls / Blocks);
            for (int b = 0; b < Blocks; b++)
            {
                for (int i = 0; i < perBlock; i++) { long t0 = Stopwatch.GetTimestamp(); echo.RoundTrip(null, 0, smallLen); echoSmall.Add(Us(t0)); }
                for (int i = 0; i < perBlock; i++) { long t0 = Stopwatch.GetTimestamp(); api.noop(); noop.Add(Us(t0)); }
                for (int i = 0; i < perBlock; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    int r = api.add_ints(2, 40);
                    add.Add(Us(t0));
                    if (r != 42) { Console.Error.WriteLine("CHECK FAILED: remote add_ints returned " + r); ok = false; }
                }
            }
            Report("remote_" + prefix + "echo_small", echoSmall);
            Report("remote_" + prefix + "noop", noop);
            Report("remote_" + prefix + "add_ints", add);

            for (int i = 0; i < 2; i++) { ok &= CheckInc(api.inc_ndarray(big), bigSrc); echo.RoundTrip(bigP, bigBytes, bigLen); }
            var echoBig = new List<double>(bigCalls);
            var bigT = new List<double>(bigCalls);
            for (int i = 0; i < bigCalls; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                echo.RoundTrip(bigP, bigBytes, bigLen);
                echoBig.Add(Us(t0));
                t0 = Stopwatch.GetTimestamp();
                NdArray r = api.inc_ndarray(big);
                bigT.Add(Us(t0));
                if (i == bigCalls - 1) ok &= CheckInc(r, bigSrc);
            }
            Report("remote_" + prefix + "echo_big", echoBig);
            Report("remote_" + prefix + "big", bigT);

            // Connect by URL + first call, in this warmed-up process (a new websocket, hello, first call)
            var connect = new List<double>();
            for (int i = 0; i < I("connects", 3); i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                IRemoteBench c = LessPythonInvoke.Connect<IRemoteBench>(S("url"));
                c.noop();
                connect.Add(Us(t0));
                ((IDisposable)c).Dispose();
            }
            if (connect.Count > 0) Report("remote_" + prefix + "connect_warm", connect);
        }
        finally
        {
            echo.Dispose();
            ((IDisposable)api).Dispose();
            pin.Free();
        }
        return ok ? 0 : 1;
    }

    static bool CheckInc(NdArray r, float[] src)
    {
        ReadOnlySpan<float> s = r.AsSpan<float>();
        if (s.Length != src.Length) { Console.Error.WriteLine("CHECK FAILED: remote inc_ndarray returned " + s.Length + " elements"); return false; }
        for (int i = 0; i < src.Length; i += 4099)
            if (s[i] != src[i] + 1) { Console.Error.WriteLine("CHECK FAILED: remote inc_ndarray element " + i); return false; }
        if (s[src.Length - 1] != src[src.Length - 1] + 1) { Console.Error.WriteLine("CHECK FAILED: remote inc_ndarray last element"); return false; }
        return true;
    }

    // ------------------------------------------------------------------ Jupyter Server's kernel channels

    /// <summary>kernel_info_request -> kernel_info_reply over the kernel's channels websocket (Jupyter's legacy JSON
    /// messages), with the same ClientWebSocket the RemoteLane uses: what a client riding Jupyter's kernel messaging
    /// would pay per call.</summary>
    static int Channels()
    {
        int calls = I("calls", 100);
        var ws = new ClientWebSocket();
        ws.Options.SetRequestHeader("Authorization", "token " + S("token"));
        ws.ConnectAsync(new Uri(S("url")), CancellationToken.None).Wait(TimeSpan.FromSeconds(30));
        if (ws.State != WebSocketState.Open) throw new InvalidOperationException("kernel channels websocket did not open: " + ws.State);
        string session = Guid.NewGuid().ToString("N");
        var buf = new byte[1 << 20];
        try
        {
            for (int i = 0; i < 5; i++) KernelInfo(ws, session, buf);
            var t = new List<double>(calls);
            for (int i = 0; i < calls; i++) { long t0 = Stopwatch.GetTimestamp(); KernelInfo(ws, session, buf); t.Add(Us(t0)); }
            Report("jupyter_ws_kernel_info", t);
        }
        finally
        {
            try { ws.CloseAsync(WebSocketCloseStatus.NormalClosure, "", CancellationToken.None).Wait(5000); } catch (Exception) { }
            ws.Dispose();
        }
        return 0;
    }

    static void KernelInfo(ClientWebSocket ws, string session, byte[] buf)
    {
        string id = Guid.NewGuid().ToString("N");
        string msg = "{\"header\": {\"msg_id\": \"" + id + "\", \"msg_type\": \"kernel_info_request\", \"session\": \"" + session +
                     "\", \"username\": \"bench\", \"date\": \"" + DateTime.UtcNow.ToString("o", Inv) + "\", \"version\": \"5.3\"}, " +
                     "\"parent_header\": {}, \"metadata\": {}, \"content\": {}, \"channel\": \"shell\", \"buffers\": []}";
        byte[] bytes = Encoding.UTF8.GetBytes(msg);
        ws.SendAsync(new ArraySegment<byte>(bytes), WebSocketMessageType.Text, true, CancellationToken.None).Wait();
        while (true)
        {
            int len = 0;
            WebSocketReceiveResult r;
            do
            {
                if (len == buf.Length) throw new InvalidOperationException("a kernel message over " + buf.Length + " bytes");
                r = ws.ReceiveAsync(new ArraySegment<byte>(buf, len, buf.Length - len), CancellationToken.None).Result;
                if (r.MessageType == WebSocketMessageType.Close) throw new InvalidOperationException("the kernel channels websocket closed");
                len += r.Count;
            } while (!r.EndOfMessage);
            string text = Encoding.UTF8.GetString(buf, 0, len);
            // the reply's parent header carries our msg_id; other messages (iopub status) carry it too, but only one is the reply
            if (text.Contains("\"kernel_info_reply\"") && text.Contains(id)) return;
        }
    }
}

/// <summary>The echo's client: LessPy's own RemoteLane against remote_echo.py, one message each way per round trip,
/// the array's bytes copied into the request payload (when given) as the codec copies them for a call.</summary>
unsafe sealed class EchoPeer : IDisposable
{
    readonly RemoteLane _lane;

    public EchoPeer(string url)
    {
        _lane = RemoteLane.OpenForBench(url);
    }

    public void RoundTrip(byte* src, long srcBytes, long payload)
    {
        Span<byte> req = _lane.ReserveRequest(payload);
        if (src != null) new ReadOnlySpan<byte>(src, (int)srcBytes).CopyTo(req.Slice((int)(payload - srcBytes)));
        bool sent;
        ulong seq = _lane.Send((int)payload, RequestStatus.Call, 0, out sent);
        if (!sent) throw new InvalidOperationException("the echo connection is gone");
        WaitOutcome w = _lane.Wait(seq, long.MaxValue, CancellationToken.None);
        ReadOnlySpan<byte> reply;
        _lane.ReadReply(out reply);
        if (reply.Length != payload) throw new InvalidOperationException("the echo sent back " + reply.Length + " bytes for " + payload + " (" + w + ")");
        _lane.ExpireReplyViews();
    }

    public void Dispose() { _lane.Dispose(); }
}
