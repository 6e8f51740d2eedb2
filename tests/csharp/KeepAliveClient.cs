// Starts (or reuses) a headless server with LessPythonInvoke.Initialize, calls it once, and exits WITHOUT disposing.
//   mcs -unsafe -optimize+ -r:LessPy.dll KeepAliveClient.cs
//   mono KeepAliveClient.exe <module.py> <venv or ""> <keepAlive true|false>
// Prints "PID <server pid>" and CHECK lines; exits 0 only when all passed. The work folder is lesspy_work/ beside the exe.
// Run twice with keepAlive true: the same PID (the server was reused). With false: the server stops when this exits.
using System;
using LessPy;

public interface IKeepAlive
{
    [PythonImport] int add_ints(int a, int b);
}

static class KeepAliveClient
{
    static int Main(string[] args)
    {
        if (args.Length != 3)
        {
            Console.Error.WriteLine("usage: KeepAliveClient.exe <module.py> <venv or \"\"> <keepAlive true|false>");
            return 2;
        }
        bool keepAlive = bool.Parse(args[2]);
        IKeepAlive api;
        try
        {
            api = LessPythonInvoke.Initialize<IKeepAlive>(args[1], args[0], debug: false, keepAlive: keepAlive);
        }
        catch (Exception e)
        {
            Console.WriteLine("CHECK initialize FAIL " + e.GetType().Name + ": " + e.Message.Replace("\n", " | "));
            return 1;
        }
        Console.WriteLine("CHECK initialize ok");
        var conn = (ILessPyConnection)api;
        Console.WriteLine("PID " + conn.ServerPid);
        Console.WriteLine("FOLDER " + conn.WorkFolder);
        int r;
        try
        {
            r = api.add_ints(2, 40);
        }
        catch (Exception e)
        {
            Console.WriteLine("CHECK add_ints FAIL " + e.GetType().Name + ": " + e.Message.Replace("\n", " | "));
            return 1;
        }
        Console.WriteLine(r == 42 ? "CHECK add_ints ok" : "CHECK add_ints FAIL got " + r);
        return r == 42 ? 0 : 1;     // no Dispose: the process exit does it (SHUTDOWN unless keepAlive)
    }
}
