// What a newcomer's app is told, and the NdArray helpers for dtypes without a .NET type, against a server exporting
// tests/test_first_contact_cs.py's MODULE as the named session args[0].
//   mcs -unsafe -optimize+ -r:LessPy.dll -r:System.Numerics FirstContactClient.cs
//   mono FirstContactClient.exe <session name> <a runtime dir serving nothing>
// Prints "CHECK <name> ok" / "CHECK <name> FAIL <details>"; exits 0 only when all passed.
using System;
using System.Linq;
using System.Numerics;
using LessPy;

public enum Level : byte { Low = 1, High = 200 }

public interface IFirstContact
{
    [PythonImport] int add_ints(int a, int b);
    [PythonImport] void raises(string message);
    [PythonImport] void raises_empty();
    [PythonImport] Level level_of(int n);
    [PythonImport("level_of")] Level? nullable_level_of(int n);
    [PythonImport] int AddInts(int a, int b);
    [PythonImport("add_int")] int add_int(int a, int b);
    [PythonImport] NdArray every_half();
    [PythonImport] uint[] every_half_as_float32_bits();
    [PythonImport] NdArray complexes(bool dbl);
    [PythonImport] NdArray float32s();
    [PythonImport] long microseconds(TimeSpan t);
}

static class FirstContactClient
{
    static int failures;

    static void Check(string name, Func<string> body)
    {
        string problem;
        try { problem = body(); }
        catch (Exception e) { problem = "unexpected " + e.GetType().Name + ": " + e.Message; }
        if (problem == null) Console.WriteLine("CHECK " + name + " ok");
        else
        {
            failures++;
            Console.WriteLine("CHECK " + name + " FAIL " + problem.Replace("\r", " ").Replace("\n", " | "));
        }
    }

    static Exception Catch(Action body)
    {
        try { body(); }
        catch (Exception e) { return e; }
        return null;
    }

    static string Describe(Exception e) { return e == null ? "no exception" : e.GetType().Name + ": " + e.Message; }

    static string StillWorks(IFirstContact api) { return api.add_ints(2, 40) == 42 ? null : "the call after the error failed"; }

    static int Main(string[] args)
    {
        string session = args[0], emptyRuntime = args[1];
        var api = LessPythonInvoke.Connect<IFirstContact>(session);

        Check("initialize_module_is_a_folder", () =>
        {
            // a folder given as the module: said so, before any server is started
            var e = Catch(() => LessPythonInvoke.Initialize<IFirstContact>("/nonexistent-venv", emptyRuntime));
            return e is System.IO.FileNotFoundException && e.Message.Contains("is a folder, not a Python module") ? null : Describe(e);
        });
        Check("python_exception_message", () =>
        {
            var e = Catch(() => api.raises("bad value ü")) as PythonException;
            if (e == null || e.PythonType != "ValueError" || e.Message != "bad value ü") return "type and message: " + Describe(e);
            string printed = e.PythonType + ": " + e.Message;
            if (printed != "ValueError: bad value ü") return printed;
            string s = e.ToString();
            if (!s.StartsWith("LessPy.PythonException: ValueError: bad value ü" + Environment.NewLine, StringComparison.Ordinal)) return "ToString: " + s;
            if (!s.Contains("--- Python traceback ---") || !s.Contains("first_contact.py") || !s.Contains("in raises")) return "ToString without the traceback: " + s;
            return StillWorks(api);
        });
        Check("python_exception_without_message", () =>
        {
            var e = Catch(() => api.raises_empty()) as PythonException;
            if (e == null || e.PythonType != "KeyError" || e.Message != "") return Describe(e);
            return e.ToString().StartsWith("LessPy.PythonException: KeyError" + Environment.NewLine, StringComparison.Ordinal) ? null : e.ToString();
        });

        Check("connect_lists_sessions", () =>
        {
            var e = Catch(() => LessPythonInvoke.Connect<IFirstContact>(session + "x"));
            return e is ServerUnavailableException && e.Message.Contains("(sessions served here: " + session + ")")
                && e.Message.Contains(session + "x") && !e.Message.Contains("fc_stale") ? null : Describe(e);
        });
        Check("connect_stale_session_lists_sessions", () =>
        {
            var e = Catch(() => LessPythonInvoke.Connect<IFirstContact>("fc_stale"));
            return e is ServerUnavailableException && e.Message.Contains("is no longer running")
                && e.Message.Contains("(sessions served here: " + session + ")") ? null : Describe(e);
        });
        Check("connect_nothing_served", () =>
        {
            string before = Environment.GetEnvironmentVariable("JUPYTER_RUNTIME_DIR");
            Environment.SetEnvironmentVariable("JUPYTER_RUNTIME_DIR", emptyRuntime);
            try
            {
                var e = Catch(() => LessPythonInvoke.Connect<IFirstContact>(session));
                return e is ServerUnavailableException && e.Message.Contains("(no session is served here)") ? null : Describe(e);
            }
            finally { Environment.SetEnvironmentVariable("JUPYTER_RUNTIME_DIR", before); }
        });

        Check("not_found_snake_case", () =>
        {
            var e = Catch(() => api.AddInts(1, 2)) as FunctionNotFoundException;
            if (e == null || e.FunctionName != "AddInts") return Describe(e);
            if (!e.Message.Contains("'AddInts' is not defined") || !e.Message.Contains("[PythonImport(\"add_ints\")]")) return e.Message;
            return StillWorks(api);
        });
        Check("not_found_snake_name_no_hint", () =>
        {
            var e = Catch(() => api.add_int(1, 2)) as FunctionNotFoundException;
            return e != null && e.Message.Contains("'add_int' is not defined") && !e.Message.Contains("snake_case") ? null : Describe(e);
        });

        Check("enum_result_named", () =>
        {
            if (api.level_of(200) != Level.High) return "an in-range value";
            var e = Catch(() => api.level_of(300));
            if (!(e is ResultMismatchException) || !e.Message.Contains("C# return type Level, an enum of byte, (300 is outside 0..255)")) return Describe(e);
            return StillWorks(api);
        });
        Check("nullable_enum_result_named", () =>
        {
            var e = Catch(() => api.nullable_level_of(-1));
            return e is ResultMismatchException && e.Message.Contains("Level") && !e.Message.Contains("type byte ") ? null : Describe(e);
        });

        Check("half_every_pattern", () =>
        {
            uint[] expected = api.every_half_as_float32_bits();
            NdArray nd = api.every_half();
            if (nd.Dtype != "float16" || !nd.Shape.SequenceEqual(new[] { 256, 256 })) return nd.ToString();
            float[] got = nd.ToHalfAsSingle();
            if (got.Length != 65536) return "length " + got.Length;
            for (int i = 0; i < got.Length; i++)
            {
                uint bits = BitConverter.ToUInt32(BitConverter.GetBytes(got[i]), 0);
                if (bits != expected[i]) return "pattern 0x" + i.ToString("x4") + ": 0x" + bits.ToString("x8") + ", NumPy 0x" + expected[i].ToString("x8");
            }
            return null;
        });
        Check("half_wrong_dtype", () =>
        {
            var e = Catch(() => api.float32s().ToHalfAsSingle());
            return e is InvalidOperationException && e.Message.Contains("float32") && e.Message.Contains("ToArray<Single>") ? null : Describe(e);
        });
        Check("complex128", () =>
        {
            NdArray nd = api.complexes(true);
            double[] re, im;
            nd.ToComplex(out re, out im);
            if (!re.SequenceEqual(new[] { 1, -3.5, 0, 1e30 }) || !im.SequenceEqual(new[] { 2, -0.25, 0, -1e-30 }))
                return string.Join(",", re) + " / " + string.Join(",", im);
            Complex[] c = nd.ToArray<Complex>();
            return c.SequenceEqual(re.Select((r, i) => new Complex(r, im[i]))) ? null : "ToArray<Complex>: " + string.Join(",", c);
        });
        Check("complex64", () =>
        {
            double[] re, im;
            api.complexes(false).ToComplex(out re, out im);
            return re.SequenceEqual(new[] { 1, -3.5, 0, (double)1e30f }) && im.SequenceEqual(new[] { 2, -0.25, 0, (double)-1e-30f }) ? null
                : string.Join(",", re) + " / " + string.Join(",", im);
        });
        Check("complex_wrong_dtype", () =>
        {
            double[] re, im;
            var e = Catch(() => api.float32s().ToComplex(out re, out im));
            return e is InvalidOperationException && e.Message.Contains("float32") ? null : Describe(e);
        });

        Check("timespan_truncated", () =>
        {
            // 100 ns ticks become whole microseconds, truncated toward zero (README's type table, PythonImportAttribute)
            long a = api.microseconds(TimeSpan.FromTicks(19)), b = api.microseconds(TimeSpan.FromTicks(-19)), c = api.microseconds(TimeSpan.FromTicks(9));
            return a == 1 && b == -1 && c == 0 ? null : a + " " + b + " " + c;
        });

        ((IDisposable)api).Dispose();
        return failures == 0 ? 0 : 1;
    }
}
