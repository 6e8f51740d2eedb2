// Sends many 1 MiB payloads of every kind to a notebook, for the call-history memory test.
// Usage: mono HistoryFlood.exe <session name or folder> <rounds>
// Each round: a 1 MiB byte[], a string of 1 Mi characters, a 1 MiB float32 NdArray (echoed back).
// Prints "OK <calls>" or "ERR <ExceptionType>: <message>".
using System;
using LessPy;

public interface IFlood
{
    [PythonImport] int take_bytes(byte[] data);
    [PythonImport] int take_text(string text);
    [PythonImport] NdArray echo(NdArray a);
}

public static class HistoryFlood
{
    public static int Main(string[] args)
    {
        int rounds = int.Parse(args[1]);
        const int MiB = 1 << 20;
        try
        {
            var api = LessPythonInvoke.Connect<IFlood>(args[0]);
            var floats = new float[MiB / 4];
            int calls = 0;
            for (int i = 0; i < rounds; i++)
            {
                var data = new byte[MiB];
                for (int j = 0; j < data.Length; j += 4096) data[j] = (byte)i;
                if (api.take_bytes(data) != MiB) throw new Exception("take_bytes: wrong length");
                if (api.take_text(new string((char)('a' + i % 26), MiB)) != MiB) throw new Exception("take_text: wrong length");
                floats[0] = i;
                var back = api.echo(NdArray.FromArray(floats, floats.Length));
                if (back.ToArray<float>()[0] != i) throw new Exception("echo: wrong data");
                calls += 3;
            }
            ((IDisposable)api).Dispose();
            Console.WriteLine("OK " + calls);
            return 0;
        }
        catch (Exception e)
        {
            Console.WriteLine("ERR " + e.GetType().Name + ": " + e.Message);
            return 1;
        }
    }
}
