// IEnumerable<T> methods over Python generators: lazy (one item per MoveNext), closed when disposed early,
// an exception inside surfaces at its item, and a Task method awaited next to it. Prints OK lines; exits 1 on failure.
using System;
using System.Collections.Generic;
using System.Linq;
using System.Threading.Tasks;
using LessPy;

public interface IStreams
{
    [PythonImport("countdown")] IEnumerable<int> Countdown(int n);
    [PythonImport("started_count")] int StartedCount();
    [PythonImport("closed_streams")] int[] ClosedStreams();
    [PythonImport("fails_at")] IEnumerable<int> FailsAt(int n);
    [PythonImport("not_iterable")] IEnumerable<int> NotIterable();
    [PythonImport("tagged_rows")] IEnumerable<NdArray> TaggedRows(int rows, int n);
    [PythonImport("async_double")] Task<int> AsyncDouble(int x);
    [PythonImport("add_ints")] int AddInts(int a, int b);
}

public static class StreamClient
{
    static int failures;

    static void Check(bool ok, string what)
    {
        Console.WriteLine((ok ? "OK " : "FAIL ") + what);
        if (!ok) failures++;
    }

    public static int Main(string[] args)
    {
        var api = LessPythonInvoke.Connect<IStreams>(args[0]);
        Check(api.Countdown(3).SequenceEqual(new[] { 3, 2, 1 }), "countdown(3) streams 3 2 1");
        int before = api.StartedCount();
        IEnumerable<int> lazy = api.Countdown(1000);
        Check(api.StartedCount() == before, "nothing runs before the first MoveNext");
        using (var e = lazy.GetEnumerator())
        {
            e.MoveNext();
            e.MoveNext();
            Check(e.Current == 999, "second item is 999");
        }
        Check(api.StartedCount() == before + 2, "one item per MoveNext, not the whole generator");
        Check(api.ClosedStreams().Contains(1000), "disposing the enumerator closed the generator (its finally ran)");
        var got = new List<int>();
        try
        {
            foreach (int x in api.FailsAt(2)) got.Add(x);
            Check(false, "an exception inside the generator surfaces");
        }
        catch (PythonException e)
        {
            Check(got.Count == 2 && e.PythonType == "ValueError" && e.Message.Contains("no item 2"), "the generator's exception surfaces at item 2");
        }
        try
        {
            api.NotIterable().ToList();
            Check(false, "a non-iterable result is refused");
        }
        catch (ResultMismatchException e)
        {
            Check(e.Message.Contains("IEnumerable<int>"), "a non-iterable result names IEnumerable<int>");
        }
        int rows = 0;
        foreach (NdArray row in api.TaggedRows(5, 1000))
        {
            int[] v = row.ToArray<int>();
            if (v.Length == 1000 && v.All(x => x == rows)) rows++;
        }
        Check(rows == 5, "NdArray items arrive whole, one per row");
        Check(api.AsyncDouble(21).Result == 42, "an async def is awaited by the server (Task<int>)");
        Check(api.AddInts(2, 40) == 42, "plain calls go on after streams");
        return failures == 0 ? 0 : 1;
    }
}
