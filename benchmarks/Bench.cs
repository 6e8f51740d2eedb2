// Bench.exe: lesspy calls next to their floors, measured in the same process and the same run.
//   mono Bench.exe <work-folder> <echo-port> <scratch-dir> [--small N] [--big N] [--echo N]
// Built and run by benchmarks/run.py (MONO_PATH = csharp/bin). Uses the public LessPy API only.
// Prints `RESULT name median_us p90_us` lines (and `INFO ...` lines); never judges the numbers.
// Floors and calls are measured in alternating blocks so that drift on a noisy VM hits both alike.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using LessPy;

public interface IBench
{
    [PythonImport] int add_ints(int a, int b);
    [PythonImport] NdArray inc_ndarray(NdArray a);
    [PythonImport] NdArray echo(NdArray a);
}

static unsafe class Bench
{
    const int N = 4096;                          // the 4096x4096 float32 call
    const long BigBytes = (long)N * N * 4;       // 64 MiB
    const int EchoCount = 1 << 17;               // 131072 float64 = 1 MiB
    const long EchoBytes = EchoCount * 8L;

    static readonly double UsPerTick = 1e6 / Stopwatch.Frequency;

    static int Main(string[] args)
    {
        if (args.Length < 3)
        {
            Console.Error.WriteLine("usage: mono Bench.exe <work-folder> <echo-port> <scratch-dir> [--small N] [--big N] [--echo N]");
            return 2;
        }
        string folder = args[0];
        int echoPort = int.Parse(args[1], CultureInfo.InvariantCulture);
        string scratch = args[2];
        int smallCalls = 5000, bigCalls = 15, echoCalls = 300;
        for (int i = 3; i + 1 < args.Length; i += 2)
        {
            int v = int.Parse(args[i + 1], CultureInfo.InvariantCulture);
            if (args[i] == "--small") smallCalls = v;
            else if (args[i] == "--big") bigCalls = v;
            else if (args[i] == "--echo") echoCalls = v;
            else { Console.Error.WriteLine("unknown option " + args[i]); return 2; }
        }

        // ---- floor resources, created once and reused (first writes into a fresh mapping are slow)
        string copyPath = Path.Combine(scratch, "cs_copy.mmf");
        var bigSrc = new float[N * N];
        for (int i = 0; i < bigSrc.Length; i++) bigSrc[i] = i % 1000;
        var echoSrc = new double[EchoCount];
        for (int i = 0; i < echoSrc.Length; i++) echoSrc[i] = i * 0.5;
        GCHandle bigPin = GCHandle.Alloc(bigSrc, GCHandleType.Pinned);
        GCHandle echoPin = GCHandle.Alloc(echoSrc, GCHandleType.Pinned);
        byte* bigSrcP = (byte*)bigPin.AddrOfPinnedObject();
        byte* echoSrcP = (byte*)echoPin.AddrOfPinnedObject();

        MemoryMappedFile mmf = MemoryMappedFile.CreateFromFile(copyPath, FileMode.Create, null, BigBytes, MemoryMappedFileAccess.ReadWrite);
        MemoryMappedViewAccessor view = mmf.CreateViewAccessor(0, BigBytes, MemoryMappedFileAccess.ReadWrite);
        byte* acquired = null;
        view.SafeMemoryMappedViewHandle.AcquirePointer(ref acquired);
        byte* dst = acquired + view.PointerOffset;

        var echoSock = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        echoSock.NoDelay = true;
        echoSock.Connect(new IPEndPoint(IPAddress.Loopback, echoPort));
        var one = new byte[1];

        IBench api = LessPythonInvoke.Connect<IBench>(folder);
        var conn = (ILessPyConnection)api;
        Console.WriteLine("INFO connected to lesspy server pid " + conn.ServerPid + " at " + conn.WorkFolder);
        bool ok = true;
        try
        {
            // ---- (a) small call vs the one-byte round trip (blocking receive; and Poll+Receive as the client does)
            if (api.add_ints(2, 40) != 42) { Console.Error.WriteLine("CHECK FAILED: add_ints(2, 40) != 42"); ok = false; }
            for (int i = 0; i < 1000; i++) { RoundTrip(echoSock, one); RoundTripPoll(echoSock, one); api.add_ints(2, 40); }
            var rtt = new List<double>(smallCalls);
            var rttPoll = new List<double>(smallCalls);
            var small = new List<double>(smallCalls);
            const int Blocks = 10;
            int perBlock = Math.Max(1, smallCalls / Blocks);
            for (int b = 0; b < Blocks; b++)
            {
                for (int i = 0; i < perBlock; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    RoundTrip(echoSock, one);
                    rtt.Add((Stopwatch.GetTimestamp() - t0) * UsPerTick);
                }
                for (int i = 0; i < perBlock; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    api.add_ints(2, 40);
                    small.Add((Stopwatch.GetTimestamp() - t0) * UsPerTick);
                }
                for (int i = 0; i < perBlock / 4; i++)
                {
                    long t0 = Stopwatch.GetTimestamp();
                    RoundTripPoll(echoSock, one);
                    rttPoll.Add((Stopwatch.GetTimestamp() - t0) * UsPerTick);
                }
            }
            Report("rtt_1byte", rtt);
            Report("rtt_1byte_poll", rttPoll);
            Report("small_add_ints", small);

            // ---- (b) 4096x4096 float32 `a + 1` vs one C# copy of 64 MiB into a mapping
            var big = NdArray.FromArray(bigSrc, N, N);
            for (int i = 0; i < 3; i++) Buffer.MemoryCopy(bigSrcP, dst, BigBytes, BigBytes);   // fault the view in
            for (int i = 0; i < 2; i++) ok &= CheckInc(api.inc_ndarray(big), bigSrc);         // fault the mappings in
            var copy64 = new List<double>(bigCalls);
            var bigT = new List<double>(bigCalls);
            for (int i = 0; i < bigCalls; i++)
            {
                long t0 = Stopwatch.GetTimestamp();
                Buffer.MemoryCopy(bigSrcP, dst, BigBytes, BigBytes);
                copy64.Add((Stopwatch.GetTimestamp() - t0) * UsPerTick);
                t0 = Stopwatch.GetTimestamp();
                NdArray r = api.inc_ndarray(big);
                bigT.Add((Stopwatch.GetTimestamp() - t0) * UsPerTick);
                if (i == bigCalls - 1) ok &= CheckInc(r, bigSrc);
            }
            Report("cs_copy_64MiB", copy64);
            Report("big_inc_4096sq_f32", bigT);

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
                copy1.Add((Stopwatch.GetTimestamp() - t0) * UsPerTick);
                t0 = Stopwatch.GetTimestamp();
                api.echo(e1);
                echoT.Add((Stopwatch.GetTimestamp() - t0) * UsPerTick);
            }
            Report("cs_copy_1MiB", copy1);
            Report("echo_1MiB_f64", echoT);
        }
        finally
        {
            ((IDisposable)api).Dispose();
            try { echoSock.Shutdown(SocketShutdown.Both); } catch (SocketException) { }
            echoSock.Dispose();
            view.SafeMemoryMappedViewHandle.ReleasePointer();
            view.Dispose();
            mmf.Dispose();
            bigPin.Free();
            echoPin.Free();
            try { File.Delete(copyPath); } catch (IOException) { }
        }
        return ok ? 0 : 1;
    }

    /// <summary>One byte out, one byte back, blocking receive: the floor of a notify round trip.</summary>
    static void RoundTrip(Socket s, byte[] one)
    {
        one[0] = 1;
        if (s.Send(one, 0, 1, SocketFlags.None) != 1) throw new IOException("echo server: send failed");
        if (s.Receive(one, 0, 1, SocketFlags.None) != 1) throw new IOException("echo server closed the connection");
    }

    /// <summary>The same with Poll before Receive, the way LessPy's channel waits (it needs a timeout).</summary>
    static void RoundTripPoll(Socket s, byte[] one)
    {
        one[0] = 1;
        if (s.Send(one, 0, 1, SocketFlags.None) != 1) throw new IOException("echo server: send failed");
        if (!s.Poll(10000000, SelectMode.SelectRead)) throw new IOException("echo server: no answer in 10 s");
        if (s.Receive(one, 0, 1, SocketFlags.None) != 1) throw new IOException("echo server closed the connection");
    }

    static bool CheckInc(NdArray r, float[] src)
    {
        ReadOnlySpan<float> s = r.AsSpan<float>();
        if (s.Length != src.Length) { Console.Error.WriteLine("CHECK FAILED: inc_ndarray returned " + s.Length + " elements"); return false; }
        for (int i = 0; i < src.Length; i += 4099)
            if (s[i] != src[i] + 1) { Console.Error.WriteLine("CHECK FAILED: inc_ndarray element " + i); return false; }
        if (s[src.Length - 1] != src[src.Length - 1] + 1) { Console.Error.WriteLine("CHECK FAILED: inc_ndarray last element"); return false; }
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

    static void Report(string name, List<double> us)
    {
        us.Sort();
        double median = us[us.Count / 2];
        double p90 = us[(int)Math.Min(us.Count - 1, Math.Ceiling(0.9 * us.Count) - 1)];
        Console.WriteLine("RESULT " + name + " " + median.ToString("0.00", CultureInfo.InvariantCulture) + " "
            + p90.ToString("0.00", CultureInfo.InvariantCulture));
        Console.WriteLine("INFO " + name + " n=" + us.Count);
    }
}
