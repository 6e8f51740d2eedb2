// One app of a shared headless server, driven line by line on stdin, for tests/test_csharp_shutdown.py.
//   mcs -unsafe -optimize+ -r:LessPy.dll ShutdownClient.cs
//   mono ShutdownClient.exe <module.py> <python>
// Initialize<T> (keepAlive: false) starts the server of lesspy_work/ beside the exe, or reuses the live one, and prints
// "PID <server pid>". Then, for each line read: "call" calls add_ints and prints "CHECK call ok"; "dispose" disposes the
// proxy and prints "DISPOSED"; "exit" (or the end of stdin) ends the process. Every answer ends with a "READY" line.
using System;
using LessPy;

public interface IShutdownApi
{
    [PythonImport] int add_ints(int a, int b);
}

static class ShutdownClient
{
    static int Main(string[] args)
    {
        IShutdownApi api;
        try
        {
            api = LessPythonInvoke.Initialize<IShutdownApi>(args[1], args[0], debug: false, keepAlive: false);
        }
        catch (Exception e)
        {
            Console.WriteLine("CHECK initialize FAIL " + e.GetType().Name + ": " + e.Message.Replace("\n", " | "));
            return 1;
        }
        Console.WriteLine("PID " + ((ILessPyConnection)api).ServerPid);
        Console.WriteLine("READY");
        string line;
        while ((line = Console.ReadLine()) != null && line != "exit")
        {
            if (line == "call")
            {
                try
                {
                    int r = api.add_ints(2, 40);
                    Console.WriteLine(r == 42 ? "CHECK call ok" : "CHECK call FAIL got " + r);
                }
                catch (Exception e)
                {
                    Console.WriteLine("CHECK call FAIL " + e.GetType().Name + ": " + e.Message.Replace("\n", " | "));
                }
            }
            else if (line == "dispose")
            {
                ((IDisposable)api).Dispose();
                Console.WriteLine("DISPOSED");
            }
            Console.WriteLine("READY");
        }
        return 0;
    }
}
