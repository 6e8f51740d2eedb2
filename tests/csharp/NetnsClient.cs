// The app on "another host": typed calls by URL to a notebook's `%lesspy serve --name X` behind a Jupyter Server
// that runs in another network namespace (tests/test_remote_netns.py).
//   mono NetnsClient.exe <url with ?token=...> <n>
// Prints "CHECK <name> ok" / "CHECK <name> FAIL <details>"; exits 0 only when all passed.
using System;
using LessPy;

public interface INetns
{
    [PythonImport] int add(int a, int b);
    [PythonImport] string greet(string name);
    [PythonImport] NdArray scale(NdArray a, double k);
    [PythonImport] double[] cumsum(double[] x);
    [PythonImport] void fail(string message);
}

static class NetnsClient
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

    static int Main(string[] args)
    {
        string url = args[0];
        int n = int.Parse(args[1]);
        INetns api = LessPythonInvoke.Connect<INetns>(url);
        try
        {
            Check("add", () => api.add(2, 40) == 42);
            Check("greet", () => api.greet("veth") == "hello veth from " + "inside");
            Check("ndarray", () =>
            {
                var src = new float[n * n];
                for (int i = 0; i < src.Length; i++) src[i] = i % 977;
                NdArray r = api.scale(NdArray.FromArray(src, n, n), 2.0);
                ReadOnlySpan<float> s = r.AsSpan<float>();
                if (r.Shape.Length != 2 || r.Shape[0] != n || r.Shape[1] != n || s.Length != src.Length) return false;
                for (int i = 0; i < src.Length; i += 37) if (s[i] != src[i] * 2) return false;
                return s[src.Length - 1] == src[src.Length - 1] * 2;
            });
            Check("double_array", () =>
            {
                double[] r = api.cumsum(new double[] { 1, 2, 3, 4.5 });
                return r.Length == 4 && r[0] == 1 && r[1] == 3 && r[2] == 6 && r[3] == 10.5;
            });
            Check("python_exception", () =>
            {
                try { api.fail("boom across the veth"); return false; }
                catch (PythonException e) { return e.Message.Contains("boom across the veth"); }
            });
            Check("after_error", () => api.add(-1, 1) == 0);
        }
        finally { ((IDisposable)api).Dispose(); }
        return failures == 0 ? 0 : 1;
    }
}
