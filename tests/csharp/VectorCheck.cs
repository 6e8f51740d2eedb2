// Checks the C# codec against the golden vectors of tests/vectors (PROTOCOL.md).
// Build with the library sources to reach its internals:
//   mcs -unsafe -optimize+ -out:VectorCheck.exe csharp/LessPy/*.cs tests/csharp/VectorCheck.cs
// Run: mono VectorCheck.exe tests/vectors
using System;
using System.Collections.Generic;
using System.IO;
using System.Linq;
using System.Text;
using LessPy;

public class Point { public double X { get; set; } public double Y { get; set; } }
public struct Pixel { public byte R; public byte G; public byte B; }
public class Shape
{
    public string Name { get; set; }
    public int MaxValue { get; set; }
    public Point Origin { get; set; }
    public double[] Samples { get; set; }
    public List<string> Tags { get; set; }
    public Point Parent { get; set; }
    public double Area { get { return 0; } }       // get-only: not a field of the record
}
public enum Color { Red = 1, Green = 2 }
public enum Level : byte { Low = 1, High = 3 }

static class VectorCheck
{
    // the declared C# type of each vector of tests/vectors/generate.py's TYPED_CASES (the others decode undeclared)
    static readonly Dictionary<string, Type> Declared = new Dictionary<string, Type>
    {
        { "value_nullable_int_null", typeof(int?) }, { "value_nullable_int", typeof(int?) }, { "value_nullable_double", typeof(double?) },
        { "value_nullable_bool", typeof(bool?) }, { "value_nullable_long_null", typeof(long?) }, { "value_nullable_float", typeof(float?) },
        { "value_array_float64", typeof(double[]) }, { "value_array_float64_empty", typeof(double[]) }, { "value_array_float32", typeof(float[]) },
        { "value_array_int64", typeof(long[]) }, { "value_array_int16", typeof(short[]) }, { "value_array_uint16", typeof(ushort[]) },
        { "value_array_uint32", typeof(uint[]) }, { "value_array_uint64", typeof(ulong[]) }, { "value_array_int8", typeof(sbyte[]) },
        { "value_array_bool", typeof(bool[]) }, { "value_string_array", typeof(string[]) }, { "value_string_list_empty", typeof(List<string>) },
        { "value_double_jagged", typeof(double[][]) }, { "value_dict_double", typeof(Dictionary<string, double>) },
        { "value_dict_empty", typeof(IReadOnlyDictionary<string, int>) }, { "value_dict_of_lists", typeof(Dictionary<string, IReadOnlyList<string>>) },
        { "value_datetime_utc", typeof(DateTime) }, { "value_datetime_naive_min", typeof(DateTime) }, { "value_datetime_naive_max", typeof(DateTime) },
        { "value_timespan_negative", typeof(TimeSpan) }, { "value_timespan_zero", typeof(TimeSpan) }, { "value_guid", typeof(Guid) },
        { "value_scalar_uint8", typeof(byte) }, { "value_scalar_int8", typeof(sbyte) }, { "value_scalar_int16", typeof(short) },
        { "value_scalar_uint16", typeof(ushort) }, { "value_scalar_uint32", typeof(uint) }, { "value_scalar_uint64", typeof(ulong) },
        { "value_enum_int", typeof(Color) }, { "value_enum_byte", typeof(Level) },
        { "value_rect_float64_2x3", typeof(double[,]) }, { "value_rect_int32_fortran", typeof(int[,,]) }, { "value_rect_bool_0x2", typeof(bool[,]) },
        { "value_record_point", typeof(Point) }, { "value_record_struct", typeof(Pixel) }, { "value_record_nested", typeof(Shape) },
        { "value_record_null", typeof(Point) }, { "value_nullable_struct_null", typeof(Pixel?) }, { "value_record_list", typeof(IList<Point>) },
        { "value_tuple_datetime_nullable", typeof(ValueTuple<DateTime, int?>) },
    };

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
                else if (name == "reply_ndarray_in_request")
                    ok &= CheckInRequest(name, bytes, File.ReadAllBytes(Path.Combine(args[0], "call_scale3.bin")));
                else if (name == "call_types")
                    ok &= CheckCall(name, bytes, "types", typeof(Shape),
                        new object[] { new[] { 0.5, -1.0 }, null, new Dictionary<string, int> { { "k", 7 } },
                                       new Guid("00112233-4455-6677-8899-aabbccddeeff"), new Point { X = 3, Y = 4 }, new double[,] { { 1, 0 }, { 0, 1 } } },
                        typeof(double[]), typeof(DateTime?), typeof(Dictionary<string, int>), typeof(Guid), typeof(Point), typeof(double[,]));
            }
            catch (Exception e)
            {
                Console.WriteLine(name + " EXCEPTION " + e.GetType().Name + ": " + e.Message.Replace('\n', ' '));
                ok = false;
            }
        }
        ok &= Fuzz(args[0]);
        return ok ? 0 : 1;
    }

    /// <summary>NDARRAY_IN_REQUEST: the reply to call_scale3 points at its first argument's data; elsewhere it is no value.</summary>
    static bool CheckInRequest(string name, byte[] reply, byte[] request)
    {
        DType dt;
        int[] shape;
        int offset, length;
        Codec.ReadInRequest(reply, request.Length, out dt, out shape, out offset, out length);
        var values = System.Runtime.InteropServices.MemoryMarshal.Cast<byte, float>(new ReadOnlySpan<byte>(request, offset, length)).ToArray();
        bool ok = dt.Name == "float32" && shape.Length == 2 && shape[0] == 2 && shape[1] == 3
            && values.SequenceEqual(new float[] { 0f, 0.25f, 0.5f, 0.75f, 1f, 1.25f });
        bool beyond = false, elsewhere = false;
        try { Codec.ReadInRequest(reply, offset + length - 1, out dt, out shape, out offset, out length); }
        catch (ProtocolException) { beyond = true; }
        try
        {
            int pos = 0;
            WireType actual;
            Codec.Read(new ReadOnlyMemory<byte>(reply), reply, ref pos, WireType.For(typeof(NdArray), false, out _unusedType), out actual);
        }
        catch (ProtocolException) { elsewhere = true; }
        ok &= beyond && elsewhere;
        Console.WriteLine(name + (ok ? " OK" : " MISMATCH beyond=" + beyond + " elsewhere=" + elsewhere));
        return ok;
    }

    static Type _unusedType;

    /// <summary>Corrupted and truncated vectors, decoded as their declared types, only ever raise ProtocolException.</summary>
    static bool Fuzz(string dir)
    {
        var rng = new Random(7);
        int tries = 0, rejected = 0;
        foreach (var kv in Declared)
        {
            byte[] original = File.ReadAllBytes(Path.Combine(dir, kv.Key + ".bin"));
            Type unused;
            WireType declared = WireType.For(kv.Value, false, out unused);
            for (int i = 0; i < 300; i++)
            {
                byte[] b = (byte[])original.Clone();
                int flips = rng.Next(1, 4);
                for (int k = 0; k < flips && b.Length > 0; k++) b[rng.Next(b.Length)] = (byte)rng.Next(256);
                int len = rng.Next(2) == 0 ? b.Length : rng.Next(b.Length + 1);
                var mem = new ReadOnlyMemory<byte>(b, 0, len);
                int pos = 0;
                WireType actual;
                tries++;
                try { Codec.Read(mem, mem.Span, ref pos, declared, out actual); }
                catch (ProtocolException) { rejected++; }
                catch (Exception e)
                {
                    Console.WriteLine("fuzz " + kv.Key + " FAILED: " + e.GetType().Name + ": " + e.Message + " on " + Hex(b.Take(len).ToArray()));
                    return false;
                }
            }
        }
        Console.WriteLine("fuzz ok " + tries + " tries, " + rejected + " rejected");
        return true;
    }

    static bool CheckValue(string name, byte[] bytes)
    {
        var mem = new ReadOnlyMemory<byte>(bytes);
        int pos = 0;
        WireType type, declared = null;
        Type clr, unused;
        if (Declared.TryGetValue(name, out clr))
        {
            declared = WireType.For(clr, false, out unused);
            if (declared == null) throw new InvalidDataException("WireType.For refused " + clr + " (" + unused + ")");
        }
        object v = Codec.Read(mem, mem.Span, ref pos, declared, out type);
        if (declared != null && v != null && !clr.IsAssignableFrom(v.GetType()) && Nullable.GetUnderlyingType(clr) != v.GetType())
            throw new InvalidDataException("decoded a " + v.GetType() + " for " + clr);
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
        var inv = System.Globalization.CultureInfo.InvariantCulture;
        if (t.Tag == Tag.Optional) t = t.Items[0];
        switch (t.Tag)
        {
            case Tag.Bool: return (bool)v ? "bool:true" : "bool:false";
            case Tag.Int32: return "int32:" + Convert.ToInt64(v).ToString(inv);
            case Tag.Int64: return "int64:" + Convert.ToInt64(v).ToString(inv);
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
            case Tag.RectArray:
            {
                var a = (Array)v;
                var shape = Enumerable.Range(0, a.Rank).Select(i => a.GetLength(i));
                return "ndarray:" + t.DType.Name + ":[" + string.Join(",", shape) + "]:" + Hex(ArrayBytes(a));
            }
            case Tag.Array: return "array:" + t.DType.Name + ":" + Hex(ArrayBytes((Array)v));
            case Tag.List:
            {
                var parts = new List<string>();
                foreach (object item in (System.Collections.IEnumerable)v) parts.Add(Render(item, t.Items[0]));
                return "list(" + string.Join(",", parts) + ")";
            }
            case Tag.Dict:
            {
                var parts = new List<string>();
                foreach (KeyValuePair<string, object> kv in t.Dicts.Pairs(v))
                    parts.Add(Hex(Encoding.UTF8.GetBytes(kv.Key)) + "=" + Render(kv.Value, t.Items[0]));
                return "dict(" + string.Join(",", parts) + ")";
            }
            case Tag.Scalar: return t.DType.Name + ":" + (t.DType.Name[0] == 'i' ? Convert.ToInt64(v).ToString(inv) : Convert.ToUInt64(v).ToString(inv));
            case Tag.DateTime:
            {
                var d = (DateTime)v;
                return "datetime:" + d.Ticks.ToString(inv) + ":" + (d.Kind == DateTimeKind.Utc ? "1" : "0");
            }
            case Tag.TimeSpan: return "timespan:" + ((TimeSpan)v).Ticks.ToString(inv);
            case Tag.Guid: return "guid:" + ((Guid)v).ToString();
            case Tag.Record:
            {
                var parts = new string[t.Items.Length];
                for (int i = 0; i < parts.Length; i++) parts[i] = t.Names[i] + "=" + Render(t.GetField(v, i), t.Items[i]);
                return "record(" + string.Join(",", parts) + ")";
            }
        }
        return "?";
    }

    static byte[] ArrayBytes(Array a)
    {
        var b = new byte[Buffer.ByteLength(a)];
        Buffer.BlockCopy(a, 0, b, 0, b.Length);
        return b;
    }

    static string Ints(int[] a) { return "[" + string.Join(",", a) + "]"; }

    static string Hex(byte[] b)
    {
        var sb = new StringBuilder(b.Length * 2);
        foreach (byte x in b) sb.Append(x.ToString("x2"));
        return sb.ToString();
    }
}
