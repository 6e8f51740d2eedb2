// Issue 14, the argument side of item 5, from the C# side: NdArray arguments (copied into the request, or made in
// place with NewRequestArray) that Python keeps after the call keep their values while later calls write the
// same request file, and Python cannot make them writable. Served module: tests/test_trust_args.py MODULE.
// Prints "CHECK <name> ok|FAIL <detail>" lines; exits 1 on a failure.
// Usage: TrustArgsClient.exe <work folder>
using System;
using LessPy;

public interface ITrustArgs : ILessPyConnection
{
    [PythonImport("keep")] double Keep(NdArray a);
    [PythonImport("total")] double Total(NdArray a);
    [PythonImport("kept_sums")] double[] KeptSums();
    [PythonImport("drop_kept")] int DropKept();
    [PythonImport("writable")] bool Writable(NdArray a);
}

public static class TrustArgsClient
{
    static int failures;

    static void Check(string name, bool ok, string detail)
    {
        Console.WriteLine("CHECK " + name + (ok ? " ok" : " FAIL " + detail));
        if (!ok) failures++;
    }

    static NdArray InPlace(ITrustArgs api, int n, double v)
    {
        NdArray a = api.NewRequestArray<double>(n);
        var w = a.AsWritableSpan<double>();
        for (int i = 0; i < w.Length; i++) w[i] = v;
        return a;
    }

    static string Sums(double[] s)
    {
        return string.Join(", ", Array.ConvertAll(s, x => x.ToString("R")));
    }

    public static int Main(string[] args)
    {
        var api = LessPythonInvoke.Connect<ITrustArgs>(args[0]);
        const int n = 1000;
        api.DropKept();

        // an array copied into the request, kept in a global
        double first = api.Keep(NdArray.FromArray(new double[n].Fill(1.5), n));
        for (int k = 0; k < 3; k++) api.Total(NdArray.FromArray(new double[n].Fill(-9.0 - k), n));
        double[] sums = api.KeptSums();
        Check("kept_array_keeps_values", first == 1.5 * n && sums.Length == 1 && sums[0] == 1.5 * n, Sums(sums));
        api.DropKept();

        // arrays made in place in the request file (from its end downward: every call reuses the same offsets)
        double a1 = api.Keep(InPlace(api, n, 2.0));
        double a2 = api.Keep(InPlace(api, n, 3.0));
        for (int k = 0; k < 3; k++) api.Total(InPlace(api, n, -5.0 - k));
        api.Total(NdArray.FromArray(new double[4 * n].Fill(-1.0), 4 * n));
        sums = api.KeptSums();
        Check("kept_in_place_keeps_values", a1 == 2.0 * n && a2 == 3.0 * n && sums.Length == 2
              && sums[0] == 2.0 * n && sums[1] == 3.0 * n, Sums(sums));
        api.DropKept();

        // Python cannot make an argument view writable (nor write into this process's request file)
        Check("in_place_not_writable", !api.Writable(InPlace(api, n, 1.0)), "Python made it writable");
        Check("array_not_writable", !api.Writable(NdArray.FromArray(new double[n], n)), "Python made it writable");

        // the kept arrays' values after many more calls on every lane
        double b = api.Keep(InPlace(api, 64 * n, 4.0));
        for (int k = 0; k < 200; k++) api.Total(InPlace(api, 64 * n, k));
        sums = api.KeptSums();
        Check("kept_in_place_after_many_calls", b == 256.0 * n && sums.Length == 1 && sums[0] == 256.0 * n, Sums(sums));
        api.DropKept();
        ((IDisposable)api).Dispose();
        return failures == 0 ? 0 : 1;
    }
}

static class ArrayFill
{
    public static double[] Fill(this double[] a, double v)
    {
        for (int i = 0; i < a.Length; i++) a[i] = v;
        return a;
    }
}
