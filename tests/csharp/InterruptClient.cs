// Driven over stdin by tests/test_csharp_lanes.py against a live kernel (default mode: calls run between cells).
//   mono InterruptClient.exe <work folder or session name>
// Prints READY, then for each command one line:
//   spin   -> calls spin() (never returns) until Jupyter's interrupt ends it: "SPIN <exception>: <message>", then "ADD <add(2, 40)>"
//   queue  -> starts note_async("q", 0.0) with a CancellationToken: "QUEUED"
//   cancel -> cancels it and waits: "CANCELLED <exception type>" (or "DONE <result>" when it ran)
using System;
using System.Threading;
using System.Threading.Tasks;
using LessPy;

public interface IInterrupt : ILessPyConnection
{
    [PythonImport] void spin();
    [PythonImport] int add(int a, int b);
    [PythonImport("note")] Task<string> note_async(string tag, double seconds, CancellationToken ct);
}

static class InterruptClient
{
    static int Main(string[] args)
    {
        IInterrupt api = LessPythonInvoke.Connect<IInterrupt>(args[0]);
        api.CallTimeout = TimeSpan.FromSeconds(60);
        Console.WriteLine("READY");
        Task<string> queued = null;
        var cts = new CancellationTokenSource();
        string line;
        while ((line = Console.ReadLine()) != null)
        {
            switch (line.Trim())
            {
                case "spin":
                    try { api.spin(); Console.WriteLine("SPIN returned"); }
                    catch (Exception e) { Console.WriteLine("SPIN " + e.GetType().Name + ": " + e.Message.Replace("\n", " | ")); }
                    Console.WriteLine("ADD " + api.add(2, 40));
                    break;
                case "queue":
                    queued = api.note_async("q", 0.0, cts.Token);
                    Console.WriteLine("QUEUED");
                    break;
                case "cancel":
                    cts.Cancel();
                    try { Console.WriteLine("DONE " + queued.GetAwaiter().GetResult()); }
                    catch (Exception e) { Console.WriteLine("CANCELLED " + e.GetType().Name); }
                    break;
                case "quit":
                    api.Dispose();
                    Console.WriteLine("BYE");
                    return 0;
            }
            Console.Out.Flush();
        }
        return 0;
    }
}
