// The victim's side of the trust tests (issue 14 items 1, 3 and 4; tests/test_trust_csharp.py).
//   mcs -unsafe -optimize+ -r:LessPy.dll TrustClient.cs
//   mono TrustClient.exe init <venv or python> <module.py> <secret>      Initialize (lesspy_work/ beside the exe), echo(secret)
//   mono TrustClient.exe connect <work folder or name> <secret>          Connect, echo(secret)
//   mono TrustClient.exe appA <venv or python> <module.py>               Initialize, a slow call on a thread; after a line on
//                                                                         stdin, its result and one more call
//   mono TrustClient.exe loop <venv or python> <module.py> <seconds> <tag>  Initialize, then echo("x") for that long:
//                                                                         "LOOP <calls> WRONG <n> ERRORS <n> [first error]"
// Prints "RESULT <text>" for a call that returned, "ERR <exception type>: <message>" for one that threw (one line each),
// "READY" when appA's slow call is running. Exits 0 unless the arguments are wrong.
using System;
using System.Threading;
using LessPy;

public interface ITrust
{
    [PythonImport] string echo(string s);
    [PythonImport] string slow_echo(string s, double seconds);
}

static class TrustClient
{
    static string Err(Exception e)
    {
        return "ERR " + e.GetType().Name + ": " + e.Message.Replace("\r", " ").Replace("\n", " | ");
    }

    static void Echo(ITrust api, string text)
    {
        try { Console.WriteLine("RESULT " + api.echo(text)); }
        catch (Exception e) { Console.WriteLine(Err(e)); }
    }

    static int Main(string[] args)
    {
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: TrustClient.exe init|connect|appA ...");
            return 2;
        }
        ITrust api;
        try
        {
            switch (args[0])
            {
                case "init": api = LessPythonInvoke.Initialize<ITrust>(args[1], args[2], keepAlive: true); break;
                case "connect": api = LessPythonInvoke.Connect<ITrust>(args[1]); break;
                case "appA":
                case "loop": api = LessPythonInvoke.Initialize<ITrust>(args[1], args[2], keepAlive: true); break;
                default: Console.Error.WriteLine("unknown mode " + args[0]); return 2;
            }
        }
        catch (Exception e)
        {
            Console.WriteLine(Err(e));
            return 0;
        }
        Console.WriteLine("PID " + ((ILessPyConnection)api).ServerPid);
        if (args[0] == "loop")
        {
            var end = DateTime.UtcNow.AddSeconds(double.Parse(args[3], System.Globalization.CultureInfo.InvariantCulture));
            int calls = 0, wrong = 0, errors = 0;
            string first = "";
            Console.WriteLine("READY");
            Console.Out.Flush();
            while (DateTime.UtcNow < end)
            {
                calls++;
                try
                {
                    if (api.echo("x") != args[4] + ":x") wrong++;
                }
                catch (Exception e)
                {
                    if (errors++ == 0) first = " " + Err(e);
                }
            }
            Console.WriteLine("LOOP " + calls + " WRONG " + wrong + " ERRORS " + errors + first);
            ((IDisposable)api).Dispose();
            return 0;
        }
        if (args[0] != "appA")
        {
            Echo(api, args[args.Length - 1]);
            ((IDisposable)api).Dispose();
            return 0;
        }
        string slow = null;
        var t = new Thread(() =>
        {
            try { slow = "RESULT " + api.slow_echo("slow", 4.0); }
            catch (Exception e) { slow = Err(e); }
        });
        t.Start();
        Thread.Sleep(500);                       // the call is running in Python
        Console.WriteLine("READY");
        Console.Out.Flush();
        Console.In.ReadLine();
        t.Join();
        Console.WriteLine(slow);
        Echo(api, "again");
        // a later call after the server of the folder changed (the test may restart it with another module)
        Console.WriteLine("READY2");
        Console.Out.Flush();
        Console.In.ReadLine();
        Echo(api, "after");
        ((IDisposable)api).Dispose();
        return 0;
    }
}
