// Issue 14, items 5 and 6 from the C# side: result_array() and arrays placed in the reply give plain NumPy's
// guarantees. Prints "CHECK <name> ok|FAIL <detail>" lines; exits 1 on a failure.
// Usage: TrustMemoryClient.exe <work folder> <n>
using System;
using System.Collections.Generic;
using System.Threading;
using LessPy;

public interface ITrustMemory
{
    [PythonImport("two_result_arrays")] NdArray TwoResultArrays(int n);
    [PythonImport("result_arrays_share")] bool ResultArraysShare(int n);
    [PythonImport("in_tuple")] ValueTuple<NdArray, NdArray, int> InTuple(int n);
    [PythonImport("in_list")] List<NdArray> InList(int n);
    [PythonImport("keep_result")] NdArray KeepResult(int n, double v);
    [PythonImport("keep_natural")] NdArray KeepNatural(NdArray a, double v);
    [PythonImport("write_kept")] double WriteKept(int i, double v);
    [PythonImport("kept_sums")] double[] KeptSums();
    [PythonImport("drop_kept")] int DropKept();
    [PythonImport("plus_one")] NdArray PlusOne(NdArray a);
    [PythonImport("fork_writes")] NdArray ForkWrites(int n);
    [PythonImport("fork_result_array")] NdArray ForkResultArray(int n);
    [PythonImport("pool_writes")] NdArray PoolWrites(int n);
    [PythonImport("fork_then_send")] NdArray ForkThenSend(int n);
    [PythonImport("counter_result")] NdArray CounterResult(int n, int passes);
    [PythonImport("counter_temporary")] NdArray CounterTemporary(NdArray a, int passes);
    [PythonImport("counters_wrong")] int CountersWrong();
}

public static class TrustMemoryClient
{
    static int failures;

    static void Check(string name, bool ok, string detail)
    {
        Console.WriteLine("CHECK " + name + (ok ? " ok" : " FAIL " + detail));
        if (!ok) failures++;
    }

    // the first element that differs from want(i), or -1
    static int FirstWrong(ReadOnlySpan<double> v, Func<int, double> want)
    {
        for (int i = 0; i < v.Length; i++)
            if (v[i] != want(i)) return i;
        return -1;
    }

    static string Describe(NdArray a, Func<int, double> want)
    {
        var v = a.AsSpan<double>();
        int i = FirstWrong(v, want);
        if (i < 0) return "";
        int wrong = 0;
        for (int k = 0; k < v.Length; k++) if (v[k] != want(k)) wrong++;
        return wrong + " of " + v.Length + " elements wrong, first at " + i + ": " + v[i] + " instead of " + want(i);
    }

    static void Exact(string name, NdArray a, int n, Func<int, double> want)
    {
        bool ok = a.Length == n && FirstWrong(a.AsSpan<double>(), want) < 0;
        Check(name, ok, a.Length != n ? "length " + a.Length + " instead of " + n : Describe(a, want));
    }

    public static int Main(string[] args)
    {
        var api = LessPythonInvoke.Connect<ITrustMemory>(args[0]);
        int n = int.Parse(args[1]);

        // item 5: two result_array() in one call are distinct arrays
        Exact("two_result_arrays_distinct", api.TwoResultArrays(n), n, i => 1.0);
        Check("result_arrays_share_no_memory", !api.ResultArraysShare(n), "np.shares_memory said True");

        // item 5: result_array() inside a tuple and a list: the reply header is never written over the data
        for (int round = 0; round < 3; round++)
        {
            var t = api.InTuple(n);
            Exact("tuple_first_exact", t.Item1, n, i => i);
            Exact("tuple_second_exact", t.Item2, n, i => -i);
            Check("tuple_int", t.Item3 == 7, t.Item3.ToString());
            List<NdArray> l = api.InList(n);
            Check("list_count", l.Count == 3, l.Count.ToString());
            for (int k = 0; k < l.Count; k++)
            {
                int kk = k;
                Exact("list_item_exact", l[k], n, i => kk * 1000 + i);
            }
        }

        // item 5: a kept result never changes under a view C# holds, and never sees later replies
        var data = new double[n];
        for (int i = 0; i < n; i++) data[i] = i;
        var input = NdArray.FromArray(data, n);
        NdArray r1 = api.KeepResult(n, 5.0);
        double written = 0;
        var other = new Thread(() => { written = api.WriteKept(0, 99.0); });   // another lane writes the kept array
        other.Start();
        other.Join();
        Check("kept_written_in_python", written == 99.0 * n, written.ToString());
        Exact("kept_result_array_view_unchanged", r1, n, i => 5.0);
        NdArray r2 = api.KeepNatural(input, 3.0);
        other = new Thread(() => { written = api.WriteKept(1, -1.0); });
        other.Start();
        other.Join();
        Exact("kept_natural_view_unchanged", r2, n, i => i + 3.0);
        for (int k = 0; k < 3; k++) Exact("later_reply", api.PlusOne(input), n, i => i + 1.0);
        double[] sums = null;
        other = new Thread(() => { sums = api.KeptSums(); });
        other.Start();
        other.Join();
        Check("kept_arrays_see_no_later_reply", sums.Length == 2 && sums[0] == 99.0 * n && sums[1] == -1.0 * n,
              string.Join(",", sums));
        api.DropKept();

        // item 6: a forked child writing an array placed in the reply changes neither the parent's array nor C#'s
        for (int round = 0; round < 2; round++)
        {
            Exact("fork_child_writes", api.ForkWrites(n), n, i => 0.0);
            Exact("fork_child_writes_result_array", api.ForkResultArray(n), n, i => 0.0);
            NdArray sent = api.ForkThenSend(n);            // its child writes 99 into it 0.2 s after the reply
            Thread.Sleep(600);
            Exact("fork_child_writes_after_reply", sent, n, i => 7.0);
        }
        Exact("pool_children_write", api.PoolWrites(n), n, i => 0.0);
        Exact("after_forks", api.PlusOne(input), n, i => i + 1.0);

        // item 7: arrays a Python thread increments while they are moved out (C# threads calling meanwhile)
        int big = 1 << 21, passes = 30;
        var bigData = new double[big];
        for (int i = 0; i < big; i++) bigData[i] = i;
        var bigInput = NdArray.FromArray(bigData, big);
        bool stop = false;
        int wrongReplies = 0;
        var caller = new Thread(() =>
        {
            while (!Volatile.Read(ref stop))
                if (FirstWrong(api.PlusOne(input).AsSpan<double>(), i => i + 1.0) >= 0) wrongReplies++;
        });
        caller.Start();
        for (int round = 0; round < 3; round++)
        {
            api.CounterResult(big, passes);
            Exact("counter_temporary_reply", api.CounterTemporary(bigInput, passes), big, i => i + 1.0);
        }
        int lost = api.CountersWrong();
        Volatile.Write(ref stop, true);
        caller.Join();
        Check("no_lost_increments", lost == 0, lost + " elements lost increments");
        Check("other_thread_replies_exact", wrongReplies == 0, wrongReplies + " wrong replies");
        return failures == 0 ? 0 : 1;
    }
}
