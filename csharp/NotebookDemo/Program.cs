// A C# app that calls functions of a live Jupyter notebook (notebooks/quickstart.ipynb, ndarray_inspection.ipynb).
// Usage: mono NotebookDemo.exe <session name or folder> [quickstart|inspection] [--again]
// With --again it prints READY after the first calls, waits for a line on stdin, and calls again:
// meanwhile the notebook can redefine the functions, and the second call runs the new code.
using System;
using System.Linq;
using LessPy;

public interface IQuickstart
{
    [PythonImport] long add_ints(long a, long b);
    [PythonImport] NdArray scale(NdArray a, double k);
}

public interface IInspection
{
    [PythonImport] NdArray brighten(NdArray image, double amount);
    [PythonImport] double profile(NdArray row);
}

public static class NotebookDemo
{
    public static int Main(string[] args)
    {
        string session = args.Length > 0 ? args[0] : "quickstart";
        string which = args.Length > 1 ? args[1] : "quickstart";
        bool again = args.Contains("--again");
        try
        {
            if (which == "inspection") Inspection(session);
            else Quickstart(session, again);
            return 0;
        }
        catch (LessPyException e)
        {
            // a Python exception's type is its own property; the message is the message alone
            var py = e as PythonException;
            Console.WriteLine("ERROR " + (py != null ? py.PythonType : e.GetType().Name) + ": " + e.Message);
            return 1;
        }
    }

    static void Quickstart(string session, bool again)
    {
        var api = LessPythonInvoke.Connect<IQuickstart>(session);
        using ((IDisposable)api)
        {
            Console.WriteLine("add_ints(2, 40) = " + api.add_ints(2, 40));
            var a = NdArray.FromArray(new float[] { 1, 2, 3, 4 }, 2, 2);
            Console.WriteLine("scale([1, 2, 3, 4], 2.0) = " + Show(api.scale(a, 2.0)));
            if (!again) return;
            Console.WriteLine("READY");
            Console.Out.Flush();
            Console.ReadLine();
            Console.WriteLine("scale([1, 2, 3, 4], 2.0) = " + Show(api.scale(a, 2.0)) + " (after the notebook redefined scale)");
        }
    }

    static void Inspection(string session)
    {
        var api = LessPythonInvoke.Connect<IInspection>(session);
        using ((IDisposable)api)
        {
            const int n = 64;
            var image = new float[n * n];
            for (int y = 0; y < n; y++)
                for (int x = 0; x < n; x++)
                {
                    double dx = x - n / 2.0, dy = y - n / 2.0;
                    image[y * n + x] = (float)(0.5 * x / n + (dx * dx + dy * dy < 200 ? 0.4 : 0.0));
                }
            NdArray bright = api.brighten(NdArray.FromArray(image, n, n), 0.25);
            Console.WriteLine("brighten: " + bright + " max " + bright.AsSpan<float>().ToArray().Max());
            var signal = Enumerable.Range(0, 200).Select(i => (float)Math.Sin(i / 10.0)).ToArray();
            Console.WriteLine("profile: " + api.profile(NdArray.FromArray(signal)).ToString("F4"));
        }
    }

    static string Show(NdArray a)
    {
        return "[" + string.Join(", ", a.ToArray<float>().Select(v => v.ToString("0.###"))) + "]";
    }
}
