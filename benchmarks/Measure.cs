// Measure.cs: the timing and the RESULT lines the three bench programs share (Bench.exe, PyNetBench.exe and
// KgBench.exe are built with it), so run.py reads one format.
using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;

static class Measure
{
    static readonly double UsPerTick = 1e6 / Stopwatch.Frequency;

    public static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    /// <summary>Microseconds since the Stopwatch timestamp <paramref name="t0"/>.</summary>
    public static double Us(long t0) { return (Stopwatch.GetTimestamp() - t0) * UsPerTick; }

    public static string F(double v) { return v.ToString("0.00", Inv); }

    /// <summary>Prints "RESULT name median p90 p99 count" (µs); sorts <paramref name="us"/>.</summary>
    public static void Report(string name, List<double> us)
    {
        us.Sort();
        Console.WriteLine("RESULT " + name + " " + F(us[us.Count / 2]) + " " + F(Pct(us, 0.90)) + " " + F(Pct(us, 0.99)) + " " + us.Count);
    }

    static double Pct(List<double> sorted, double p)
    {
        return sorted[(int)Math.Min(sorted.Count - 1, Math.Max(0, Math.Ceiling(p * sorted.Count) - 1))];
    }
}
