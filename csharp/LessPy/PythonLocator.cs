using System;
using System.Collections.Generic;
using System.IO;
using System.Runtime.InteropServices;

namespace LessPy
{
    /// <summary>Finds the Python interpreter a headless server runs on (<see cref="LessPythonInvoke.Initialize{T}"/>).</summary>
    internal static class PythonLocator
    {
        /// <summary>
        /// The interpreter for <paramref name="venv"/> (Initialize's pythonVenvPath): an interpreter's path, a venv root
        /// (its bin/python3, bin/python or Scripts\python.exe), or "" for python3 then python on PATH.
        /// </summary>
        internal static string Find(string venv)
        {
            bool windows = RuntimeInformation.IsOSPlatform(OSPlatform.Windows);
            var tried = new List<string>();
            if (venv.Length == 0)
            {
                string[] names = windows ? new[] { "python3.exe", "python.exe" } : new[] { "python3", "python" };
                string[] dirs = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(Path.PathSeparator);
                foreach (string name in names)
                {
                    foreach (string dir in dirs)
                    {
                        if (dir.Length == 0) continue;
                        string p;
                        try { p = Path.Combine(dir.Trim('"'), name); }
                        catch (ArgumentException) { continue; }
                        if (File.Exists(p)) return p;
                    }
                    tried.Add(name);
                }
                throw new ServerUnavailableException("no Python interpreter found: tried " + string.Join(" and ", tried)
                    + " on PATH (" + string.Join(Path.PathSeparator.ToString(), dirs) + "). Install Python 3 or pass a venv path to Initialize");
            }
            if (File.Exists(venv)) return Path.GetFullPath(venv);
            string root = Path.GetFullPath(venv);
            string[] candidates = windows
                ? new[] { Path.Combine(root, "Scripts", "python.exe"), Path.Combine(root, "bin", "python") }
                : new[] { Path.Combine(root, "bin", "python3"), Path.Combine(root, "bin", "python"), Path.Combine(root, "Scripts", "python.exe") };
            foreach (string c in candidates)
            {
                if (File.Exists(c)) return c;
                tried.Add(c);
            }
            throw new ServerUnavailableException("no Python interpreter in the venv " + root + ": tried " + string.Join(", ", tried));
        }
    }
}
