using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Reflection;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// Entry point: turns an interface whose methods carry <see cref="PythonImportAttribute"/> into calls to Python
    /// functions, through shared-memory files and a notify socket (docs/PROTOCOL.md): each concurrent call uses a lane
    /// of its own (a request and a response mapping), so one proxy serves many threads. Methods may return
    /// <c>Task</c> / <c>Task&lt;T&gt;</c> (they do not block the caller) and take a <c>CancellationToken</c> as their last
    /// parameter (not sent to Python). The returned object implements the interface, <see cref="IDisposable"/> and
    /// <see cref="ILessPyConnection"/>; your interface may also derive from either.
    /// </summary>
    public static class LessPythonInvoke
    {
        static readonly TimeSpan StartTimeout = TimeSpan.FromSeconds(30);
        static readonly List<Process> Started = new List<Process>();

        /// <summary>
        /// Starts a headless Python server exporting the functions of <paramref name="exportingPyPath"/>, or reuses
        /// the live one already serving <c>lesspy_work/</c> beside the running assembly, and returns a proxy for
        /// <typeparamref name="T"/>.
        /// </summary>
        /// <param name="pythonVenvPath">A venv root (its bin/python or Scripts\python.exe), a path to an interpreter,
        /// or "" for <c>python3</c> then <c>python</c> on PATH. The interpreter needs the lesspy-kernel package.</param>
        /// <param name="exportingPyPath">The Python module whose functions are called.</param>
        /// <param name="debug">Run the server with --debug (it logs every call to lesspy_work/server.log) and echo its start-up output to Console.Error.</param>
        /// <param name="keepAlive">Leave a server this call starts running after this process ends, for the next run to
        /// reuse. Without it, a server this call starts stops once this app has disposed the proxy or ended and no other
        /// client is connected. A live server already serving the folder (and the same module) is reused either way
        /// and left running. Several processes may call Initialize on one folder at once: one starts the server
        /// (under the folder's start lock, lesspy.lock), the others reuse it.</param>
        /// <param name="capacity">The starting size in bytes of each lane mapping (request and response, 64-byte header
        /// included); mappings grow on demand. Ignored when a running server is reused.</param>
        /// <exception cref="NotSupportedException">A method of <typeparamref name="T"/> lacks [PythonImport] or uses an unsupported type.</exception>
        /// <exception cref="ServerUnavailableException">No interpreter, lesspy-kernel missing, or the server failed to start in 30 s.</exception>
        /// <exception cref="HandshakeException">The folder's server refused the connection (for example: busy with another client).</exception>
        public static T Initialize<T>(string pythonVenvPath, string exportingPyPath, bool debug = false, bool keepAlive = false, int capacity = 16 * 1024 * 1024)
            where T : class
        {
            if (exportingPyPath == null) throw new ArgumentNullException(nameof(exportingPyPath));
            if (capacity < 4096) throw new ArgumentOutOfRangeException(nameof(capacity), "at least 4096 bytes");
            // a server is started only for an interface that binds: the binding is waited for before starting one
            return Prepared<T>(preparation => StartOrReuse(pythonVenvPath, exportingPyPath, debug, keepAlive, capacity,
                () => preparation.Finish()));
        }

        /// <summary>
        /// The channel to the folder's server of <paramref name="exportingPyPath"/>: reused, or started (Initialize's
        /// work). <paramref name="beforeStarting"/> runs (and may throw) before a new server is started.
        /// </summary>
        static Channel StartOrReuse(string pythonVenvPath, string exportingPyPath, bool debug, bool keepAlive, int capacity,
            Action beforeStarting)
        {
            string module = Path.GetFullPath(exportingPyPath);
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
                    channel = StartServer(folder, FindPython(pythonVenvPath ?? ""), module, debug, keepAlive, capacity);
                }
            }
            // No SHUTDOWN on Dispose: a server started without --keep-alive stops by itself once its last client has
            // gone and this process has ended (--parent-pid); SHUTDOWN would stop it under another app sharing it.
            return channel;
        }

        /// <summary>
        /// Attaches to a server that is already running (a notebook's <c>%lesspy serve</c>, or a headless one) and
        /// returns a proxy for <typeparamref name="T"/>. Never starts or stops a server; disposing just disconnects.
        /// </summary>
        /// <param name="workFolderOrName">A work folder path, or the name given to <c>%lesspy serve --name NAME</c>
        /// (found in the Jupyter runtime dir's <c>lesspy/NAME/</c>). An argument with a path separator, or naming an
        /// existing directory, is a folder.</param>
        /// <exception cref="ServerUnavailableException">Nothing serves the folder, or its files are stale.</exception>
        /// <exception cref="HandshakeException">The server refused the connection (wrong key, version, or busy: the message names the limit).</exception>
        public static T Connect<T>(string workFolderOrName) where T : class
        {
            if (workFolderOrName == null) throw new ArgumentNullException(nameof(workFolderOrName));
            if (workFolderOrName.Length == 0) throw new ArgumentException("empty work folder or session name", nameof(workFolderOrName));
            return Prepared<T>(preparation => OpenServed(workFolderOrName));
        }

        /// <summary>
        /// The proxy over the channel <paramref name="open"/> returns, with <typeparamref name="T"/> bound on another
        /// thread meanwhile (<see cref="Preparation{T}"/>). An interface that cannot be bound is reported first,
        /// whatever opening the channel said. This thread compiles the codec first (<see cref="Preparation{T}.WarmCodec"/>).
        /// </summary>
        static T Prepared<T>(Func<Preparation<T>, Channel> open) where T : class
        {
            CheckPlatform();
            var preparation = Preparation<T>.Start();
            WarmUp.Sockets();
            Preparation<T>.WarmCodec();
            Channel channel;
            try
            {
                channel = open(preparation);
            }
            catch
            {
                preparation.Finish();
                throw;
            }
            Dictionary<MethodInfo, MethodBinding> bindings;
            try
            {
                bindings = preparation.Finish();
            }
            catch
            {
                channel.Dispose();
                throw;
            }
            return LessPyProxy.Create<T>(channel, bindings);
        }

        /// <summary>The channel to the live server of a folder or session name (Connect's checks, in order).</summary>
        static Channel OpenServed(string workFolderOrName)
        {
            WorkFolder folder = WorkFolder.Resolve(workFolderOrName);
            bool isName = folder.Path != WorkFolder.FullPath(workFolderOrName);
            string how = isName ? "run %lesspy serve --name " + workFolderOrName + " in the notebook" : "run %lesspy serve in the notebook";
            bool exists = WorkFolder.DirectoryExists(folder.Path) || (Posix.IsLinux && Posix.LinkStatus(folder.Path).HasValue);
            if (exists) folder.Check();           // this user's own and private, not a link: before anything is read or sent
            if (!exists || !folder.HasServerFiles)
                throw new ServerUnavailableException("no lesspy server is serving " + folder.Path + ": " + how
                    + " (or start one with `python -m lesspy_kernel serve --module M --work-folder " + folder.Path + "`)"
                    + (isName && !exists ? ". The name was looked up as that session; a folder named " + workFolderOrName + " in the current "
                        + "directory is used only when no such session exists and there is none here either: give a folder as ./" + workFolderOrName
                        + " or a full path" : ""));
            int pid = folder.ReadNumber(WorkFolder.PidFile);
            if (!WorkFolder.ProcessAlive(pid))
            {
                string served = folder.ServedModule();
                if (served != null)
                    how = "start it again with `python -m lesspy_kernel serve --module " + served + " --work-folder " + folder.Path + "`";
                throw new ServerUnavailableException("the " + (served != null ? "headless " : "") + "server of " + folder.Path + " (pid " + pid
                    + ") is no longer running: its files are stale; " + how);
            }
            Channel channel = Channel.Open(folder);
            try
            {
                // the module this proxy binds: after a reconnect the folder's server must still serve it
                channel.BoundModule = folder.ServedModule() ?? "";
            }
            catch
            {
                channel.Dispose(false);
                throw;
            }
            return channel;
        }

        static void CheckPlatform()
        {
            if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("LessPy needs a little-endian machine");
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

        /// <summary>The interpreter for <paramref name="venv"/>: see <see cref="Initialize{T}"/>.</summary>
        internal static string FindPython(string venv)
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

        static Channel StartServer(WorkFolder folder, string python, string module, bool debug, bool keepAlive, int capacity)
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
                    + "from a clone of the lesspy repository or a wheel built from it (lesspy is not on PyPI): " + python
                    + " -m pip install PATH_TO_LESSPY (or PATH_TO/lesspy_kernel-VERSION-py3-none-any.whl); or pass the venv that has it as pythonVenvPath";
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
