// The app side of tests/test_trust_sessions.py (issue 14 follow-up: named sessions and their folder).
//   mcs -unsafe -optimize+ -r:LessPy.dll TrustSessionsClient.cs
//   mono TrustSessionsClient.exe <session name or folder> <text>     Connect, then whoami(text)
// Prints "RESULT <text>" when the call returned, or "ERR <exception type>: <message>" (one line). Exits 0.
using System;
using LessPy;

public interface ISession : IDisposable
{
    [PythonImport] string whoami(string s);
}

static class TrustSessionsClient
{
    static int Main(string[] args)
    {
        if (args.Length != 2)
        {
            Console.Error.WriteLine("usage: TrustSessionsClient.exe <name or folder> <text>");
            return 2;
        }
        try
        {
            using (var api = LessPythonInvoke.Connect<ISession>(args[0])) Console.WriteLine("RESULT " + api.whoami(args[1]));
        }
        catch (Exception e)
        {
            Console.WriteLine("ERR " + e.GetType().Name + ": " + e.Message.Replace("\r", " ").Replace("\n", " | "));
        }
        return 0;
    }
}
