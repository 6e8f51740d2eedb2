// A C# client the kernel tests drive line by line over stdin: it stays connected (a running app)
// while the test edits the notebook. Each command prints exactly one line: "OK <value>" or
// "ERR <ExceptionType>: <message>".
//   timeout <ms> | ping | scale <x> | total <n> (sends an n x n float32 arange) | quit
using System;
using System.Linq;
using LessPy;

public interface INotebook
{
    [PythonImport] long ping();
    [PythonImport] double scale(double x);
    [PythonImport] double total(NdArray a);
}

public static class NotebookRepl
{
    public static int Main(string[] args)
    {
        INotebook api;
        try { api = LessPythonInvoke.Connect<INotebook>(args[0]); }
        catch (Exception e) { Console.WriteLine("ERR " + e.GetType().Name + ": " + e.Message); return 1; }
        var conn = (ILessPyConnection)api;
        Console.WriteLine("OK connected " + conn.ServerPid);
        string line;
        while ((line = Console.ReadLine()) != null)
        {
            var parts = line.Trim().Split(' ');
            try
            {
                switch (parts[0])
                {
                    case "timeout":
                        conn.CallTimeout = TimeSpan.FromMilliseconds(int.Parse(parts[1]));
                        Console.WriteLine("OK");
                        break;
                    case "ping":
                        Console.WriteLine("OK " + api.ping());
                        break;
                    case "scale":
                        Console.WriteLine("OK " + api.scale(double.Parse(parts[1])).ToString("R"));
                        break;
                    case "total":
                        int n = int.Parse(parts[1]);
                        var data = Enumerable.Range(0, n * n).Select(i => (float)i).ToArray();
                        Console.WriteLine("OK " + api.total(NdArray.FromArray(data, n, n)).ToString("R"));
                        break;
                    case "quit":
                        conn.Dispose();
                        Console.WriteLine("OK bye");
                        return 0;
                    default:
                        Console.WriteLine("ERR unknown command " + parts[0]);
                        break;
                }
            }
            catch (LessPyException e)
            {
                Console.WriteLine("ERR " + e.GetType().Name + ": " + e.Message.Replace("\n", " | "));
            }
            Console.Out.Flush();
        }
        return 0;
    }
}
