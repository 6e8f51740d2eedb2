// Calls what a notebook might hold but must not export, and what it defines: one line per call,
// "OK <value>" or "ERR <ExceptionType>: <message>".
// Usage: mono ExportCheck.exe <session name or folder> <path of a file to try to remove>
using System;
using LessPy;

public interface IExportCheck
{
    [PythonImport] void remove(string path);
    [PythonImport("open")] long open_(string path);
    [PythonImport] long get_ipython();
    [PythonImport] long Point(double x);
    [PythonImport] long mine();
}

public static class ExportCheck
{
    static void Try(Func<object> call)
    {
        try { Console.WriteLine("OK " + call()); }
        catch (LessPyException e) { Console.WriteLine("ERR " + e.GetType().Name + ": " + e.Message.Replace("\n", " | ")); }
    }

    public static int Main(string[] args)
    {
        var api = LessPythonInvoke.Connect<IExportCheck>(args[0]);
        Try(() => { api.remove(args[1]); return "removed"; });
        Try(() => api.open_(args[1]));
        Try(() => api.get_ipython());
        Try(() => api.Point(1.0));
        Try(() => api.mine());
        ((IDisposable)api).Dispose();
        return 0;
    }
}
