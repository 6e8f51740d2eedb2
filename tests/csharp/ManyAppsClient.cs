// One of several apps on one server: connect, make calls whose results carry this process's tag, then wait for a line
// on stdin (so the test holds all apps connected at once) before disposing.
//   mono ManyAppsClient.exe <work folder> <calls>
// Prints "CONNECTED <server pid>" or "REFUSED <exception type>: <message>" (exit 3), then CHECK lines.
using System;
using System.Diagnostics;
using LessPy;

public interface IManyApps
{
    [PythonImport] NdArray fill(int tag, int n);
    [PythonImport] int add_ints(int a, int b);
}

static class ManyAppsClient
{
    static int Main(string[] args)
    {
        IManyApps api;
        try { api = LessPythonInvoke.Connect<IManyApps>(args[0]); }
        catch (LessPyException e)
        {
            Console.WriteLine("REFUSED " + e.GetType().Name + ": " + e.Message.Replace("\n", " | "));
            return 3;
        }
        var conn = (ILessPyConnection)api;
        Console.WriteLine("CONNECTED " + conn.ServerPid);
        int calls = int.Parse(args[1]);
        int tag = Process.GetCurrentProcess().Id;
        int wrong = 0;
        string error = null;
        try
        {
            for (int i = 0; i < calls; i++)
            {
                NdArray r = api.fill(tag + i, 4096);
                var s = r.AsSpan<int>();
                for (int k = 0; k < s.Length; k++) if (s[k] != tag + i) { wrong++; break; }
            }
        }
        catch (Exception e) { error = e.GetType().Name + ": " + e.Message; }
        Console.WriteLine(error == null && wrong == 0 ? "CHECK calls ok" : "CHECK calls FAIL wrong=" + wrong + " " + error);
        Console.Out.Flush();
        Console.In.ReadLine();
        bool last = false;
        try { last = api.add_ints(1, 2) == 3; } catch (Exception e) { Console.WriteLine("last call: " + e.Message); }
        Console.WriteLine(last ? "CHECK still_connected ok" : "CHECK still_connected FAIL");
        conn.Dispose();
        return error == null && wrong == 0 && last ? 0 : 1;
    }
}
