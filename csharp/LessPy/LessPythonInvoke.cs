using System;
using System.Collections.Generic;
using System.Reflection;

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
        public static T Initialize<T>(string pythonVenvPath, string exportingPyPath, bool debug = false, bool keepAlive = false, int capacity = Mapping.DefaultCapacity)
            where T : class
        {
            if (exportingPyPath == null) throw new ArgumentNullException(nameof(exportingPyPath));
            if (capacity < Mapping.MinCapacity) throw new ArgumentOutOfRangeException(nameof(capacity), "at least " + Mapping.MinCapacity + " bytes");
            // a server is started only for an interface that binds: the binding is waited for before starting one
            return Prepared<T>(preparation => ServerProcess.StartOrReuse(pythonVenvPath, exportingPyPath, debug, keepAlive, capacity,
                () => preparation.Finish()));
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

    }
}
