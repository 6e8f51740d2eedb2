// Calls a running server, waits for a line on stdin (meanwhile the test drops the connection server-side, or restarts
// the server in the same folder), then calls again: the client must reconnect by itself.
//   mcs -unsafe -optimize+ -r:LessPy.dll ReconnectClient.cs
//   mono ReconnectClient.exe <work folder>
// Prints "PID <pid>" before and after, "READY" when it waits, and CHECK lines; exits 0 only when all passed.
using System;
using LessPy;

public interface IReconnect
{
    [PythonImport] int add_ints(int a, int b);
}

static class ReconnectClient
{
    static int failures;

    static void Call(IReconnect api, string name, int a, int b)
    {
        try
        {
            int r = api.add_ints(a, b);
            if (r == a + b) Console.WriteLine("CHECK " + name + " ok");
            else { failures++; Console.WriteLine("CHECK " + name + " FAIL got " + r); }
        }
        catch (Exception e)
        {
            failures++;
            Console.WriteLine("CHECK " + name + " FAIL " + e.GetType().Name + ": " + e.Message.Replace("\n", " | "));
        }
    }

    static int Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: ReconnectClient.exe <work folder>");
            return 2;
        }
        var api = LessPythonInvoke.Connect<IReconnect>(args[0]);
        var conn = (ILessPyConnection)api;
        conn.CallTimeout = TimeSpan.FromSeconds(30);
        Console.WriteLine("PID " + conn.ServerPid);
        Call(api, "first_call", 2, 40);
        Console.WriteLine("READY");
        Console.Out.Flush();
        Console.In.ReadLine();
        Call(api, "call_after_reconnect", 3, 4);
        Call(api, "another_call", 5, 6);
        Console.WriteLine("PID " + conn.ServerPid);
        ((IDisposable)api).Dispose();
        Console.WriteLine(failures == 0 ? "ALL CHECKS PASSED" : failures + " CHECKS FAILED");
        return failures == 0 ? 0 : 1;
    }
}
