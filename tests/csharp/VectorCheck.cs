// Checks the C# codec against the golden vectors of tests/vectors (PROTOCOL.md).
// Build with the library sources to reach its internals:
//   mcs -unsafe -optimize+ -out:VectorCheck.exe csharp/LessPy/*.cs tests/csharp/VectorCheck.cs
// Run: mono VectorCheck.exe tests/vectors
using System;
using System.IO;
using System.Linq;
using System.Text;
using LessPy;

static class VectorCheck
{
    static int Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: VectorCheck.exe <vectors dir>");
            return 2;
        }
        bool ok = true;
        foreach (string path in Directory.GetFiles(args[0], "*.bin").OrderBy(p => Path.GetFileName(p), StringComparer.Ordinal))
        {
            string name = Path.GetFileNameWithoutExtension(path);
            byte[] bytes = File.ReadAllBytes(path);
            try
            {
                if (name.StartsWith("value_")) ok &= CheckValue(name, bytes);
                else if (name.StartsWith("error_")) CheckError(name, bytes);
                else if (name == "call_add_ints")
                    ok &= CheckCall(name, bytes, "add_ints", typeof(int), new object[] { 2, 40 }, typeof(int), typeof(int));
                else if (name == "call_scale3")
                    // odd-length name and mixed arguments: every alignment rule is measured from the payload start
                    ok &= CheckCall(name, bytes, "scale3", typeof(ValueTuple<NdArray, double>),
                        new object[] { NdArray.FromArray(new float[] { 0f, 0.25f, 0.5f, 0.75f, 1f, 1.25f }, 2, 3), 2.5,
                                       new[] { 1, 2, 3 }, "\u00e9" },
                        typeof(NdArray), typeof(double), typeof(int[]), typeof(string));
            }
            catch (Exception e)
            {
                Console.WriteLine(name + " EXCEPTION " + e.GetType().Name + ": " + e.Message.Replace('\n', ' '));
                ok = false;
            }
        }
        return ok ? 0 : 1;
    }

    static bool CheckValue(string name, byte[] bytes)
    {
        var mem = new ReadOnlyMemory<byte>(bytes);
        int pos = 0;
        WireType type;
        object v = Codec.Read(mem, mem.Span, ref pos, null, out type);
        if (pos != bytes.Length) throw new InvalidDataException((bytes.Length - pos) + " bytes left after the value");
        Console.WriteLine(name + " " + Render(v, type));

        long size = Codec.Measure(v, type, 0);
        var again = new byte[size];
        int end = Codec.Write(again, 0, v, type);
        bool same = end == size && again.SequenceEqual(bytes);
        Console.WriteLine(name + (same ? " roundtrip ok" : " roundtrip MISMATCH " + Hex(again)));
        return same;
    }

    static void CheckError(string name, byte[] bytes)
    {
        ErrorFrame e = Codec.ReadError(bytes);
        Console.WriteLine(name + " error " + e.Kind + "|" + Hex(Encoding.UTF8.GetBytes(e.PythonType)) + "|"
            + Hex(Encoding.UTF8.GetBytes(e.Message)) + "|" + Hex(Encoding.UTF8.GetBytes(e.Traceback)));
    }

    static bool CheckCall(string name, byte[] bytes, string function, Type returns, object[] args, params Type[] argTypes)
    {
        Type unused;
        var types = argTypes.Select(t => WireType.For(t, false, out unused)).ToArray();
        var descriptor = new System.Collections.Generic.List<byte>();
        WireType.For(returns, true, out unused).WriteDescriptor(descriptor);
        byte[] fn = Encoding.UTF8.GetBytes(function);
        long size = Codec.MeasureCall(fn, descriptor.ToArray(), args, types);
        var buf = new byte[size];
        int len = Codec.WriteCall(buf, fn, descriptor.ToArray(), args, types);
        bool same = len == size && buf.SequenceEqual(bytes);
        Console.WriteLine(name + (same ? " encode ok" : " encode MISMATCH " + Hex(buf)));
        return same;
    }

    static string Render(object v, WireType t)
    {
        if (v == null) return "none";
        switch (t.Tag)
        {
            case Tag.Bool: return (bool)v ? "bool:true" : "bool:false";
            case Tag.Int32: return "int32:" + ((int)v).ToString(System.Globalization.CultureInfo.InvariantCulture);
            case Tag.Int64: return "int64:" + ((long)v).ToString(System.Globalization.CultureInfo.InvariantCulture);
            case Tag.Float32: return "float32:" + Hex(BitConverter.GetBytes((float)v));
            case Tag.Float64: return "float64:" + Hex(BitConverter.GetBytes((double)v));
            case Tag.String: return "string:" + Hex(Encoding.UTF8.GetBytes((string)v));
            case Tag.Bytes: return "bytes:" + Hex((byte[])v);
            case Tag.Int32Array: return "int32[]:" + Ints((int[])v);
            case Tag.Int32Jagged: return "int32[][]:" + string.Concat(((int[][])v).Select(Ints));
            case Tag.Tuple:
            {
                var parts = new string[t.Items.Length];
                for (int i = 0; i < parts.Length; i++) parts[i] = Render(t.GetItem(v, i), t.Items[i]);
                return "tuple(" + string.Join(",", parts) + ")";
            }
            case Tag.NdArray:
            {
                var nd = (NdArray)v;
                return "ndarray:" + nd.Dtype + ":[" + string.Join(",", nd.Shape) + "]:" + Hex(nd.Data);
            }
        }
        return "?";
    }

    static string Ints(int[] a) { return "[" + string.Join(",", a) + "]"; }

    static string Hex(byte[] b)
    {
        var sb = new StringBuilder(b.Length * 2);
        foreach (byte x in b) sb.Append(x.ToString("x2"));
        return sb.ToString();
    }
}
