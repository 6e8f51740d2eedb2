using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Text;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// The headless server <see cref="LessPythonInvoke.Initialize{T}"/> uses: the folder's live one reused, a stale or
    /// other module's one replaced, or a new one started and supervised (its output drained, its start-up failures
    /// explained). A server started without keepAlive runs with --parent-pid and stops once idle after this process
    /// has ended, or at once when idle after its connection is disposed (SHUTDOWN, <see cref="Channel.StopsServer"/>).
    /// </summary>
    internal static class ServerProcess
    {
        static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);
        static readonly List<Process> Started = new List<Process>();

        /// <summary>
        /// The channel to the folder's server of <paramref name="exportingPyPath"/>: reused, or started (Initialize's
        /// work). <paramref name="beforeStarting"/> runs (and may throw) before a new server is started.
        /// </summary>
        internal static Channel StartOrReuse(string pythonVenvPath, string exportingPyPath, bool debug, bool keepAlive, int capacity,
            Action beforeStarting)
        {
            string module = Path.GetFullPath(exportingPyPath);
            if (Directory.Exists(module))
                throw new FileNotFoundException("the exporting Python module " + module + " is a folder, not a Python module: give the path of a .py file", module);
            if (!File.Exists(module)) throw new FileNotFoundException("the exporting Python module " + module + " does not exist", module);

            var folder = new WorkFolder(Path.Combine(AppDomain.CurrentDomain.BaseDirectory, "lesspy_work"));
            folder.Create();
            Channel channel;
            // one process at a time finds, replaces or starts the folder's server: N apps starting together share one
            using (StartLock.Acquire(folder, StartTimeout + StartTimeout))
            {
                channel = TryReuse(folder, module);
                if (channel == null)
                {
                    beforeStarting();
                    channel = Start(folder, PythonLocator.Find(pythonVenvPath ?? ""), module, debug, keepAlive, capacity);
                }
            }
            return channel;
        }

        /// <summary>
        /// The folder's live server serving <paramref name="module"/>, or null after removing a stale one's files (or
        /// stopping a live one that serves another module and that no other app uses). Called with the start lock held, on
        /// a folder already checked (<see cref="WorkFolder.Create"/>): every file read here is checked again.
        /// </summary>
        /// <exception cref="ServerUnavailableException">A live server there serves another module for other apps (it refused
        /// to stop), names no module, or did not stop.</exception>
        static Channel TryReuse(WorkFolder folder, string module)
        {
            if (!folder.HasServerFiles)
            {
                folder.RemoveServerFiles();
                return null;
            }
            int pid = folder.ReadPidForStaleness();
            if (!WorkFolder.ProcessAlive(pid))
            {
                folder.RemoveServerFiles();
                return null;
            }
            string served = folder.ServedModule();
            if (served == module)
            {
                Channel channel = OpenLive(folder, pid);
                if (channel == null) return null;
                if (folder.ServedModule() == module)
                {
                    channel.BoundModule = module;
                    return channel;
                }
                // replaced between the two looks: decide again on what serves the folder now
                channel.Dispose(false);
                served = folder.ServedModule();
                pid = folder.ReadNumber(WorkFolder.PidFile);
                if (served == module) throw new ServerUnavailableException("the server of " + folder.Path + " changed while this app connected to it: try again");
            }
            // another module's server (or one that names none): nothing is sent to it but a stop request
            if (!Probe.Accepts(folder))
            {
                folder.RemoveServerFiles();                   // nothing accepts: stale
                return null;
            }
            if (served == null)
                throw new ServerUnavailableException("the work folder " + folder.Path + " is served by a lesspy server (pid " + pid + ") that does not "
                    + "say which module it serves (no " + WorkFolder.ModuleFile + ": a notebook's %lesspy serve, or a server of another version), "
                    + "so Initialize neither uses nor stops it. Stop it (kill " + pid + "), or reach it with LessPythonInvoke.Connect");
            string inUse;
            Probe.Stop(folder, out inUse);
            if (inUse != null)
                throw new ServerUnavailableException("the work folder " + folder.Path + " is in use: its server (pid " + pid + ") serves " + served
                    + " for another app, not " + module + ", and refused to stop (" + inUse + "). Initialize never stops a server that "
                    + "other apps use: give this app its own work folder (lesspy_work/ beside its assembly: run it from another folder)");
            var sw = Stopwatch.StartNew();
            while (WorkFolder.ProcessAlive(pid) && sw.Elapsed < StartTimeout) Thread.Sleep(20);
            if (WorkFolder.ProcessAlive(pid))
                throw new ServerUnavailableException("the server of " + folder.Path + " (pid " + pid + ") serves " + served
                    + ", not " + module + ", and did not stop when asked: stop it (kill " + pid + ")");
            folder.RemoveServerFiles();
            return null;
        }

        /// <summary>A channel to the folder's live server, or null after removing the files of a stale one.</summary>
        static Channel OpenLive(WorkFolder folder, int pid)
        {
            try
            {
                return Channel.Open(folder);
            }
            catch (ProtocolException)
            {
                // something other than a lesspy server of this version answers there: stale
                folder.RemoveServerFiles();
                return null;
            }
            catch (ServerUnavailableException e)
            {
                // only a dead process or a notify socket nobody accepts on makes a folder stale: a live server that is
                // slow to answer (busy in a long call) must not be clobbered by a second one
                if (Probe.Accepts(folder))
                    throw new ServerUnavailableException("the server of " + folder.Path + " (pid " + pid + ") is running but did not "
                        + "complete the handshake: " + e.Message + ". Wait for it, or stop it (kill " + pid + ")", e);
                folder.RemoveServerFiles();
                return null;
            }
        }

        static Channel Start(WorkFolder folder, string python, string module, bool debug, bool keepAlive, int capacity)
        {
            folder.RemoveServerFiles();
            var args = new StringBuilder("-m lesspy_kernel serve");
            args.Append(" --module ").Append(Quote(module));
            args.Append(" --work-folder ").Append(Quote(folder.Path));
            args.Append(" --capacity ").Append(capacity);
            args.Append(" --log-file ").Append(Quote(folder.File(WorkFolder.LogFile)));
            args.Append(" --lock-held");            // we hold lesspy.lock until the server is ready
            if (keepAlive) args.Append(" --keep-alive");
            if (debug) args.Append(" --debug");
            if (!keepAlive) args.Append(" --parent-pid ").Append(Process.GetCurrentProcess().Id);

            var psi = new ProcessStartInfo(python, args.ToString());
            psi.UseShellExecute = false;
            psi.CreateNoWindow = true;
            psi.RedirectStandardInput = true;
            psi.RedirectStandardOutput = true;
            psi.RedirectStandardError = true;
            psi.EnvironmentVariables["PYTHONUNBUFFERED"] = "1";
            // run in the work folder: `python -m` puts the current directory first on sys.path, and the app's
            // directory must not shadow the installed package (the module's own folder is added by the server)
            psi.WorkingDirectory = folder.Path;
            string command = python + " " + args;
            if (debug) Console.Error.WriteLine("[lesspy] starting " + command);

            var stderr = new StringBuilder();
            var p = new Process();
            p.StartInfo = psi;
            p.OutputDataReceived += (s, e) => { if (e.Data != null && debug) Console.Error.WriteLine("[python] " + e.Data); };
            p.ErrorDataReceived += (s, e) =>
            {
                if (e.Data == null) return;
                lock (stderr) { if (stderr.Length < 64 * 1024) stderr.AppendLine(e.Data); }
                if (debug) Console.Error.WriteLine("[python] " + e.Data);
            };
            try
            {
                p.Start();
            }
            catch (Exception e)
            {
                throw new ServerUnavailableException("cannot start " + python + ": " + e.Message, e);
            }
            p.BeginOutputReadLine();
            p.BeginErrorReadLine();

            var sw = Stopwatch.StartNew();
            while (true)
            {
                if (File.Exists(folder.File(WorkFolder.PortFile)))
                {
                    try
                    {
                        Channel channel = Channel.Open(folder);
                        channel.BoundModule = module;
                        channel.StopsServer = !keepAlive;       // Dispose sends SHUTDOWN: the server goes once idle
                        lock (Started) Started.Add(p);      // keeps its output drained
                        return channel;
                    }
                    catch (UntrustedWorkFolderException)
                    {
                        try { if (!p.HasExited) p.Kill(); } catch (InvalidOperationException) { } catch (SystemException) { }
                        throw;
                    }
                    catch (LessPyException)
                    {
                        if (p.HasExited || sw.Elapsed > StartTimeout)
                        {
                            try { if (!p.HasExited) p.Kill(); } catch (InvalidOperationException) { } catch (SystemException) { }
                            throw;
                        }
                    }
                }
                if (p.HasExited)
                {
                    p.WaitForExit();                   // drains the output readers
                    string err;
                    lock (stderr) err = stderr.ToString().Trim();
                    throw new ServerUnavailableException(StartFailure(python, command, p.ExitCode, err));
                }
                if (sw.Elapsed > StartTimeout)
                {
                    string err;
                    lock (stderr) err = stderr.ToString().Trim();
                    try { p.Kill(); } catch (InvalidOperationException) { } catch (SystemException) { }
                    throw new ServerUnavailableException("the Python server did not become ready within " + StartTimeout.TotalSeconds
                        + " s (no " + folder.File(WorkFolder.PortFile) + "), so it was stopped. Command: " + command
                        + (err.Length > 0 ? Environment.NewLine + err : "") + Environment.NewLine + "See " + folder.File(WorkFolder.LogFile));
                }
                Thread.Sleep(15);
            }
        }

        static string StartFailure(string python, string command, int exitCode, string stderr)
        {
            if (stderr.Contains("No module named lesspy_kernel") || stderr.Contains("No module named 'lesspy_kernel'"))
                return "the Python interpreter " + python + " does not have the lesspy_kernel package. Install it into that interpreter "
                    + "from a clone of the lesspy repository or a wheel built from it for this platform (lesspy is not on PyPI): " + python
                    + " -m pip install PATH_TO_LESSPY (or the wheel's path); or pass the venv that has it as pythonVenvPath";
            return "the Python server exited with code " + exitCode + " before it was ready. Command: " + command
                + (stderr.Length > 0 ? Environment.NewLine + stderr : " (it printed nothing on stderr)");
        }

        /// <summary>Quotes one argument for ProcessStartInfo.Arguments (Windows rules; Mono parses the same way on Unix).</summary>
        static string Quote(string a)
        {
            if (a.Length > 0 && a.IndexOfAny(new[] { ' ', '\t', '"', '\'', '\\', '$', '`' }) < 0) return a;
            var sb = new StringBuilder("\"");
            int slashes = 0;
            foreach (char c in a)
            {
                if (c == '\\') { slashes++; continue; }
                if (c == '"') { sb.Append('\\', slashes * 2 + 1).Append('"'); slashes = 0; continue; }
                sb.Append('\\', slashes);
                slashes = 0;
                sb.Append(c);
            }
            sb.Append('\\', slashes * 2).Append('"');
            return sb.ToString();
        }
    }
}
