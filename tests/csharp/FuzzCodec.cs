// The C# decoder fuzz: mutated frames through Codec.Read and Codec.ReadError (issue 7 item 8).
// Only ProtocolException (the codec's documented exception) may escape; anything else (IndexOutOfRange,
// NullReference, OutOfMemory, Overflow, InvalidCast, ...) is a bug and is reported with the frame's bytes.
// Build with the library sources to reach the internal Codec:
//   mcs -unsafe -optimize+ -out:FuzzCodec.exe csharp/LessPy/*.cs tests/csharp/FuzzCodec.cs
// Run: mono FuzzCodec.exe <vectors dir> <frames per decoder> <seed>
// Prints one JSON object (the figures for docs/RELIABILITY.md); exit code 0 when only ProtocolException escaped.
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using LessPy;

static class FuzzCodec
{
    const int MaxExamples = 20;
    // What one decode may allocate at most (the Python fuzz uses the same bound): AllocFactor bytes per byte of
    // frame plus AllocSlack. A length field believed before it is checked would allocate up to 4 GiB.
    const long AllocFactor = 32;
    const long AllocSlack = 65536;
    static readonly string[] Kinds = { "flip", "byte", "truncate", "huge16", "huge32", "huge64", "insert", "delete", "splice", "extend", "random", "dup" };
    static readonly ushort[] Huge16 = { 0xFFFF, 0x8000, 0x0400, 0x0401 };
    static readonly uint[] Huge32 = { 0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 0x7FFFFFC0, 0x10000000, 0x40000000 };
    static readonly ulong[] Huge64 = { ulong.MaxValue, long.MaxValue, 1UL << 63, 1UL << 31, 1UL << 32, int.MaxValue, 1UL << 40 };

    static Random rng;
    static WireType[] expectedTypes;

    static int Main(string[] args)
    {
        if (args.Length == 2 && args[0] == "deep") return DeepTuple(int.Parse(args[1]));
        if (args.Length != 3)
        {
            Console.Error.WriteLine("usage: FuzzCodec.exe <vectors dir> <frames per decoder> <seed>");
            return 2;
        }
        int count = int.Parse(args[1]);
        int seed = int.Parse(args[2]);
        rng = new Random(seed);
        expectedTypes = new[]
        {
            typeof(bool), typeof(int), typeof(long), typeof(float), typeof(double), typeof(string), typeof(byte[]),
            typeof(int[]), typeof(int[][]), typeof(NdArray), typeof(ValueTuple<NdArray, double>),
            typeof(ValueTuple<int, ValueTuple<string, int[]>>), typeof(ValueTuple<int, int, int, int, int, int, int>),
            typeof(List<int>), typeof(List<string>), typeof(Dictionary<string, double>), typeof(Dictionary<string, List<int>>),
            typeof(DateTime), typeof(TimeSpan), typeof(Guid), typeof(int?), typeof(double?), typeof(double[]), typeof(long[]),
            typeof(string[]), typeof(double[,]), typeof(bool[,]), typeof(byte), typeof(short), typeof(ulong),
        }.Select(t => { Type u; return WireType.For(t, false, out u); }).Where(w => w != null).ToArray();

        var values = new List<byte[]>();
        var errors = new List<byte[]>();
        var all = new List<byte[]>();
        foreach (string path in Directory.GetFiles(args[0], "*.bin").OrderBy(p => p, StringComparer.Ordinal))
        {
            byte[] b = File.ReadAllBytes(path);
            string name = Path.GetFileName(path);
            if (name.StartsWith("value_")) values.Add(b);
            else if (name.StartsWith("error_")) errors.Add(b);
            all.Add(b);
        }
        for (int i = 0; i < 300; i++) values.Add(RandomValueFrame(0));
        for (int i = 0; i < 100; i++) errors.Add(RandomErrorFrame());
        all.AddRange(values.Take(50));

        var start = DateTime.UtcNow;
        var json = new StringBuilder();
        json.Append("{\"seed\": ").Append(seed).Append(", \"frames_per_decoder\": ").Append(count).Append(", \"decoders\": {");
        bool ok = true;
        ok &= Run("read", values, all, Crafted(false), count, json);
        json.Append(", ");
        ok &= Run("read_error", errors, all, Crafted(true), count, json);
        json.Append("}, \"seconds\": ").Append(((DateTime.UtcNow - start).TotalSeconds).ToString("F1", System.Globalization.CultureInfo.InvariantCulture)).Append("}");
        Console.WriteLine(json.ToString());
        return ok ? 0 : 1;
    }

    /// <summary>Decodes one TUPLE of one item nested <paramref name="depth"/> deep; prints what happened.</summary>
    static int DeepTuple(int depth)
    {
        byte[] frame = Cat(Repeat(new byte[] { 0x0A, 1 }, depth), new byte[] { 0 });
        var mem = new ReadOnlyMemory<byte>(frame);
        int pos = 0;
        WireType actual;
        try
        {
            Codec.Read(mem, mem.Span, ref pos, null, out actual);
            Console.WriteLine("ok");
        }
        catch (Exception e)
        {
            Console.WriteLine(e.GetType().Name);
        }
        return 0;
    }

    /// <summary>Fuzzes one decoder; appends its figures to <paramref name="json"/>; false when anything but ProtocolException escaped.</summary>
    static bool Run(string decoder, List<byte[]> pool, List<byte[]> all, List<byte[]> crafted, int count, StringBuilder json)
    {
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var examples = new List<string>();
        int escaped = 0;
        long worstAlloc = 0;
        double worstRatio = 0;
        int sampled = 0;
        var over = new List<string>();
        var queue = new List<byte[]>(crafted);
        queue.AddRange(pool.Where((f, i) => i < 60));      // the unmutated seeds first
        int next = 0;
        for (int done = 0; done < count; done++)
        {
            byte[] frame;
            if (next < queue.Count) frame = queue[next++];
            else
            {
                byte[] src = rng.NextDouble() < 0.9 ? pool[rng.Next(pool.Count)] : all[rng.Next(all.Count)];
                frame = Mutate(src, pool[rng.Next(pool.Count)]);
            }
            string outcome = Decode(decoder, frame);
            if (done % 50 == 0 || done < crafted.Count)
            {
                // decoded again and measured: the first decode may load a tuple type or JIT a path (once per process)
                sampled++;
                long before = AllocatedBytes();
                Decode(decoder, frame);
                long allocated = AllocatedBytes() - before;
                if (allocated > worstAlloc) worstAlloc = allocated;
                double ratio = (allocated - AllocSlack) / Math.Max(1, frame.Length);
                if (ratio > worstRatio) worstRatio = ratio;
                if (allocated > AllocFactor * frame.Length + AllocSlack && over.Count < MaxExamples)
                    over.Add("{\"allocated\": " + allocated + ", \"frame_bytes\": " + frame.Length + ", \"frame\": \"" + Hex(frame, 256) + "\"}");
            }
            string key = outcome == "ok" || outcome == "ProtocolException" ? outcome : "escaped";
            int n;
            outcomes.TryGetValue(key, out n);
            outcomes[key] = n + 1;
            if (key == "escaped")
            {
                escaped++;
                if (examples.Count < MaxExamples)
                    examples.Add("{\"error\": " + Quote(outcome) + ", \"frame\": \"" + Hex(frame, 512) + "\"}");
            }
        }
        json.Append(Quote(decoder)).Append(": {\"frames\": ").Append(count).Append(", \"outcomes\": {");
        json.Append(string.Join(", ", outcomes.Select(kv => Quote(kv.Key) + ": " + kv.Value)));
        json.Append("}, \"escaped\": [").Append(string.Join(", ", examples)).Append("], \"alloc\": {\"worst_bytes\": ")
            .Append(worstAlloc).Append(", \"worst_bytes_per_frame_byte\": ")
            .Append(Math.Max(0, worstRatio).ToString("F2", System.Globalization.CultureInfo.InvariantCulture)).Append(", \"sampled\": ").Append(sampled).Append(", \"over_bound\": [").Append(string.Join(", ", over)).Append("]}}");
        return escaped == 0;
    }

    static string Decode(string decoder, byte[] frame)
    {
        try
        {
            if (decoder == "read_error")
            {
                ErrorFrame e = Codec.ReadError(frame);
                if (e.PythonType == null || e.Message == null || e.Traceback == null) return "NullField: a decoded error has a null part";
                return "ok";
            }
            var mem = new ReadOnlyMemory<byte>(frame);
            int pos = 0;
            WireType actual;
            WireType expected = rng.Next(10) < 6 ? null : expectedTypes[rng.Next(expectedTypes.Length)];
            object v = Codec.Read(mem, mem.Span, ref pos, expected, out actual);
            if (pos < 0 || pos > frame.Length) return "BadPosition: the decoder ended at " + pos + " of " + frame.Length;
            Touch(v);
            return "ok";
        }
        catch (ProtocolException)
        {
            return "ProtocolException";
        }
        catch (Exception e)
        {
            return e.GetType().FullName + ": " + e.Message.Replace('\n', ' ');
        }
    }

    /// <summary>Reads everything a decoded value holds, so a view past its frame would fail here.</summary>
    static long Touch(object v)
    {
        long sum = 0;
        var nd = v as NdArray;
        if (nd != null)
        {
            var span = nd.DataMemory.Span;
            for (int i = 0; i < span.Length; i++) sum += span[i];
            sum += nd.Shape.Length + nd.Length;
        }
        var jag = v as int[][];
        if (jag != null) foreach (var row in jag) sum += row == null ? 0 : row.Length;   // a null row is a value (int[][] with nulls)
        if (v is System.Runtime.CompilerServices.ITuple)
        {
            var t = (System.Runtime.CompilerServices.ITuple)v;
            for (int i = 0; i < t.Length; i++) sum += Touch(t[i]);
        }
        return sum;
    }

    static readonly Func<long> allocated = MakeAllocated();

    static Func<long> MakeAllocated()
    {
        var m = typeof(GC).GetMethod("GetAllocatedBytesForCurrentThread", Type.EmptyTypes);
        if (m != null) return (Func<long>)Delegate.CreateDelegate(typeof(Func<long>), m);
        return () => GC.GetTotalMemory(false);
    }

    static long AllocatedBytes() { return allocated(); }

    // ---------------------------------------------------------------- frames

    static List<byte[]> Crafted(bool error)
    {
        var l = new List<byte[]>();
        if (error)
        {
            l.Add(Cat(new byte[] { 1 }, U32(0xFFFFFFFF)));
            l.Add(Cat(new byte[] { 1 }, U32(0), U32(0), U32(0x7FFFFFFF)));
            l.Add(Cat(new byte[] { 200 }, new byte[12]));
            l.Add(Cat(new byte[] { 1 }, U32(4), new byte[] { 0xff, 0xfe, 0xfd, 0xfc }, new byte[8]));
            l.Add(new byte[0]);
            return l;
        }
        l.Add(Cat(Repeat(new byte[] { 0x0A, 1 }, 40), new byte[] { 0 }));            // tuple nested 40 deep
        // deeper TUPLE nesting is checked on its own ("deep" mode, tests/stress/test_stress_fuzz.py)
        l.Add(Cat(new byte[] { 0x09 }, U32(0xFFFFFFFF)));
        l.Add(Cat(new byte[] { 0x09 }, U32(8000), new byte[3 + 8 * 8000]));
        l.Add(Cat(new byte[] { 0x08 }, U32(0xFFFFFFFF), new byte[3]));
        l.Add(Cat(new byte[] { 0x06 }, U32(0xFFFFFFFF)));
        l.Add(Cat(new byte[] { 0x07 }, U32(0x7FFFFFFF), Encoding.ASCII.GetBytes("abc")));
        l.Add(Cat(new byte[] { 0x0B, 12, 2 }, U64(long.MaxValue), U64(long.MaxValue), new byte[46]));
        l.Add(Cat(new byte[] { 0x0B, 12, 3 }, U64(0), U64(1UL << 62), U64(1UL << 62), new byte[37]));
        l.Add(Cat(new byte[] { 0x0B, 12, 3 }, U64(2), U64(0), U64(int.MaxValue), new byte[37]));
        l.Add(Cat(new byte[] { 0x0B, 12, 32 }, Repeat(U64(2), 32), new byte[62]));
        l.Add(Cat(new byte[] { 0x0B, 12, 33 }, new byte[8 * 33]));
        l.Add(Cat(new byte[] { 0x0B, 14, 1 }, U64(ulong.MaxValue), new byte[53]));
        l.Add(Cat(new byte[] { 0x0B, 1, 1 }, U64(int.MaxValue), new byte[53]));
        l.Add(Cat(new byte[] { 0x0A, 7 }, Repeat(Cat(new byte[] { 0x0A, 7 }, new byte[7]), 7)));
        l.Add(Cat(new byte[] { 0x0C }, U32(0xFFFFFFFF), new byte[8]));               // the newer tags with huge counts
        l.Add(Cat(new byte[] { 0x0D }, U32(0xFFFFFFFF), new byte[8]));
        l.Add(Cat(new byte[] { 0x0E }, U32(0xFFFFFFFF), new byte[8]));
        l.Add(Cat(new byte[] { 0x0F }, U32(0x7FFFFFFF), new byte[8]));
        l.Add(new byte[0]);
        return l;
    }

    static byte[] Mutate(byte[] frame, byte[] other)
    {
        var buf = new List<byte>(frame);
        int rounds = rng.NextDouble() < 0.7 ? 1 : rng.Next(2, 4);
        for (int r = 0; r < rounds; r++)
        {
            string kind = Kinds[rng.Next(Kinds.Length)];
            int n = buf.Count;
            if (kind == "flip" && n > 0)
            {
                int k = rng.Next(1, 9);
                for (int i = 0; i < k; i++) { int at = rng.Next(n); buf[at] = (byte)(buf[at] ^ (1 << rng.Next(8))); }
            }
            else if (kind == "byte" && n > 0)
            {
                byte[] choices = { 0, 1, 0x7F, 0x80, 0xFF, (byte)rng.Next(256) };
                buf[rng.Next(n)] = choices[rng.Next(choices.Length)];
            }
            else if (kind == "truncate" && n > 0) { int at = rng.Next(n); buf.RemoveRange(at, n - at); }
            else if (kind == "huge16") Put(buf, BitConverter.GetBytes(Huge16[rng.Next(Huge16.Length)]));
            else if (kind == "huge32") Put(buf, BitConverter.GetBytes(Huge32[rng.Next(Huge32.Length)]));
            else if (kind == "huge64") Put(buf, BitConverter.GetBytes(Huge64[rng.Next(Huge64.Length)]));
            else if (kind == "insert") buf.InsertRange(rng.Next(n + 1), RandomBytes(rng.Next(1, 10)));
            else if (kind == "delete" && n > 0) { int at = rng.Next(n); buf.RemoveRange(at, Math.Min(n - at, rng.Next(1, 10))); }
            else if (kind == "splice")
            {
                int cut = rng.Next(n + 1);
                buf.RemoveRange(cut, n - cut);
                int from = rng.Next(other.Length + 1);
                buf.AddRange(other.Skip(from));
            }
            else if (kind == "extend") buf.AddRange(RandomBytes(rng.Next(1, 17)));
            else if (kind == "random") { buf.Clear(); buf.AddRange(RandomBytes(rng.Next(0, 65))); }
            else if (kind == "dup" && n > 0)
            {
                int at = rng.Next(n);
                buf.InsertRange(at, buf.GetRange(at, Math.Min(n - at, rng.Next(1, 17))));
            }
        }
        return buf.ToArray();
    }

    static void Put(List<byte> buf, byte[] value)
    {
        if (buf.Count < value.Length) return;
        int at = rng.Next(buf.Count - value.Length + 1);
        for (int i = 0; i < value.Length; i++) buf[at + i] = value[i];
    }

    /// <summary>A valid frame of a random value, written by the codec's own encoder.</summary>
    static byte[] RandomValueFrame(int depth)
    {
        object v;
        WireType t = RandomValue(depth, out v);
        var buf = new byte[Codec.Measure(v, t, 0)];
        Codec.Write(buf, 0, v, t);
        return buf;
    }

    static WireType RandomValue(int depth, out object v)
    {
        Type unused;
        int pick = rng.Next(depth < 2 ? 12 : 11);
        switch (pick)
        {
            case 0: v = rng.Next(2) == 1; break;
            case 1: v = rng.Next(int.MinValue, int.MaxValue); break;
            case 2: v = (long)rng.Next() << 20; break;
            case 3: v = (float)(rng.NextDouble() * 1e6); break;
            case 4: v = rng.NextDouble() < 0.2 ? double.NaN : rng.NextDouble(); break;
            case 5: v = new string('\u00e9', rng.Next(0, 9)) + "ok\u2713"; break;
            case 6: v = RandomBytes(rng.Next(0, 40)); break;
            case 7: v = Enumerable.Range(0, rng.Next(0, 9)).ToArray(); break;
            case 8: v = Enumerable.Range(0, rng.Next(0, 4)).Select(i => Enumerable.Range(0, rng.Next(0, 4)).ToArray()).ToArray(); break;
            case 9: v = NdArray.FromArray(Enumerable.Range(0, 6).Select(i => (float)i).ToArray(), 2, 3); break;
            case 10: v = NdArray.FromArray(new double[rng.Next(0, 5)]); break;
            default:
            {
                object a, b;
                WireType ta = RandomValue(depth + 1, out a), tb = RandomValue(depth + 1, out b);
                Type tt = typeof(ValueTuple<,>).MakeGenericType(ta.ClrType, tb.ClrType);
                WireType wt = WireType.For(tt, false, out unused);
                v = wt.MakeTuple(new[] { a, b });
                return wt;
            }
        }
        return WireType.For(v.GetType() == typeof(NdArray) ? typeof(NdArray) : v.GetType(), false, out unused);
    }

    static byte[] RandomErrorFrame()
    {
        var parts = new[] { new string('E', rng.Next(0, 12)), string.Concat(Enumerable.Repeat("message \u2713 ", rng.Next(0, 5))), new string('\n', rng.Next(0, 9)) };
        var l = new List<byte> { (byte)rng.Next(1, 10) };
        foreach (string p in parts)
        {
            byte[] b = Encoding.UTF8.GetBytes(p);
            l.AddRange(U32((uint)b.Length));
            l.AddRange(b);
        }
        return l.ToArray();
    }

    static byte[] RandomBytes(int n) { var b = new byte[n]; rng.NextBytes(b); return b; }
    static byte[] U32(uint v) { return BitConverter.GetBytes(v); }
    static byte[] U64(ulong v) { return BitConverter.GetBytes(v); }
    static byte[] U64(long v) { return BitConverter.GetBytes(v); }
    static byte[] Cat(params byte[][] parts) { return parts.SelectMany(p => p).ToArray(); }
    static byte[] Repeat(byte[] p, int n) { return Enumerable.Repeat(p, n).SelectMany(x => x).ToArray(); }

    static string Hex(byte[] b, int max)
    {
        var sb = new StringBuilder();
        for (int i = 0; i < Math.Min(b.Length, max); i++) sb.Append(b[i].ToString("x2"));
        return sb.ToString();
    }

    static string Quote(string s)
    {
        var sb = new StringBuilder("\"");
        foreach (char c in s)
        {
            if (c == '"' || c == '\\') sb.Append('\\').Append(c);
            else if (c < 0x20 || c > 0x7e) sb.Append("\\u").Append(((int)c).ToString("x4"));
            else sb.Append(c);
        }
        return sb.Append('"').ToString();
    }
}
