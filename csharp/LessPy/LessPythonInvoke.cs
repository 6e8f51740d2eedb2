using System;
using System.Collections.Generic;
using System.Reflection;
using System.Security.Cryptography.X509Certificates;

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
        /// existing directory, is a folder. A string starting with <c>http://</c>, <c>https://</c>, <c>ws://</c> or
        /// <c>wss://</c> is the URL of a session on another machine, served by Jupyter Server's lesspy relay:
        /// <c>http[s]://host:port[/base_url]/lesspy/NAME[?token=TOKEN]</c> (the token, else the <c>JUPYTER_TOKEN</c>
        /// environment variable, is sent in the Authorization header, never in the request URL; see
        /// <see cref="Connect{T}(Uri, string, string)"/>).</param>
        /// <exception cref="ServerUnavailableException">Nothing serves the folder, or its files are stale; for a URL: nothing
        /// answers there, no such session (the message lists the sessions served there), or the certificate is not trusted.</exception>
        /// <exception cref="HandshakeException">The server refused the connection (wrong key, version, or busy: the message names
        /// the limit); for a URL: Jupyter Server refused the token.</exception>
        /// <exception cref="ArgumentException">A URL that does not name a lesspy session.</exception>
        public static T Connect<T>(string workFolderOrName) where T : class
        {
            if (workFolderOrName == null) throw new ArgumentNullException(nameof(workFolderOrName));
            if (workFolderOrName.Length == 0) throw new ArgumentException("empty work folder or session name", nameof(workFolderOrName));
            if (RemoteEndpoint.IsUrl(workFolderOrName))
            {
                RemoteEndpoint at = RemoteEndpoint.Parse(workFolderOrName, null);
                return Prepared<T>(preparation => OpenRemote(at));
            }
            return Prepared<T>(preparation => OpenServed(workFolderOrName));
        }

        /// <summary>
        /// Attaches to the session <paramref name="session"/> (<c>%lesspy serve --name NAME</c> in a notebook, or
        /// <c>lesspy serve --name NAME</c>) on the machine of the Jupyter Server at <paramref name="server"/>, through the
        /// lesspy relay that Jupyter Server runs (its authentication and TLS; PROTOCOL.md section 10), and returns a proxy
        /// for <typeparamref name="T"/>. Everything works as with a local session (threads, Task, cancellation, streams,
        /// records, CallTimeout, the notebook's interrupt, the NdArray view rule), except in-place request arrays
        /// (<see cref="ILessPyConnection.NewRequestArray{T}"/>, shared memory only). Each concurrent caller uses a
        /// websocket of its own. A https server's certificate is validated against this machine's trust store.
        /// </summary>
        /// <param name="server">Jupyter Server's URL with its base URL, if any: <c>http://gpu-box:8888/</c>,
        /// <c>https://hub.example.org/user/me/</c>.</param>
        /// <param name="session">The session's name.</param>
        /// <param name="token">Jupyter Server's token (or a JupyterHub API token); null: the server URL's <c>token</c>
        /// query parameter, else the <c>JUPYTER_TOKEN</c> environment variable, else none.</param>
        /// <exception cref="ServerUnavailableException">Nothing answers there, no such session (the message lists the sessions
        /// served there), or the certificate is not trusted.</exception>
        /// <exception cref="HandshakeException">Jupyter Server refused the token, or the session refused the connection (busy, another protocol version).</exception>
        /// <exception cref="ArgumentException"><paramref name="server"/> is not an absolute http(s) URL, or <paramref name="session"/> is not a session name.</exception>
        public static T Connect<T>(Uri server, string session, string token = null) where T : class
        {
            return Connect<T>(server, session, token, null);
        }

        /// <summary>
        /// As <see cref="Connect{T}(Uri, string, string)"/>, also trusting <paramref name="trustedCertificate"/> as the
        /// server's own certificate: a server whose leaf certificate is exactly this one is accepted when the only chain
        /// errors are an untrusted root or a partial chain (a self-signed certificate) and its name matches the host.
        /// Any other certificate is validated as usual. Where <c>ClientWebSocket</c> takes a per-connection validation
        /// callback (.NET Core 2.1 and later) the rule is given to it; where it ignores it (Mono, Unity) the websocket is
        /// opened over a TLS stream of LessPy's own that applies the rule; where it has none (.NET Framework) a
        /// process-wide <see cref="System.Net.ServicePointManager.ServerCertificateValidationCallback"/> is installed
        /// that applies the rule to this host and port only and leaves every other host to the callback that was there before.
        /// </summary>
        /// <param name="server">Jupyter Server's URL with its base URL, if any.</param>
        /// <param name="session">The session's name.</param>
        /// <param name="token">Jupyter Server's token; null: as in <see cref="Connect{T}(Uri, string, string)"/>.</param>
        /// <param name="trustedCertificate">The server's certificate (for example <c>new X509Certificate2("jupyter.pem")</c>), or null.</param>
        /// <exception cref="ServerUnavailableException">Nothing answers there, no such session, or the certificate is not trusted.</exception>
        /// <exception cref="HandshakeException">Jupyter Server refused the token, or the session refused the connection.</exception>
        /// <exception cref="ArgumentException"><paramref name="server"/> is not an absolute http(s) URL, or <paramref name="session"/> is not a session name.</exception>
        public static T Connect<T>(Uri server, string session, string token, X509Certificate2 trustedCertificate) where T : class
        {
            if (server == null) throw new ArgumentNullException(nameof(server));
            if (session == null) throw new ArgumentNullException(nameof(session));
            RemoteEndpoint at = RemoteEndpoint.Of(server, session, token, trustedCertificate);
            return Prepared<T>(preparation => OpenRemote(at));
        }

        /// <summary>The channel to a remote session; the module it serves is recorded (a reconnection must find the same).</summary>
        static Channel OpenRemote(RemoteEndpoint at)
        {
            Channel channel = Channel.Open(new RemoteLaneSource(at));
            try { channel.BoundModule = RemoteLane.ServedModule(at); }
            catch (ServerUnavailableException) { channel.BoundModule = null; }     // the status cannot be read: not checked
            return channel;
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
            try
            {
                return Implement<T>(channel, bindings);
            }
            catch
            {
                channel.Dispose();
                throw;
            }
        }

        /// <summary>
        /// The generated client an interface names with <see cref="LessPyClientAttribute"/> (no code is generated at run
        /// time), else a DispatchProxy.
        /// </summary>
        static T Implement<T>(Channel channel, Dictionary<MethodInfo, MethodBinding> bindings) where T : class
        {
            var named = (LessPyClientAttribute)Attribute.GetCustomAttribute(typeof(T), typeof(LessPyClientAttribute), false);
            if (named == null) return LessPyProxy.Create<T>(channel, bindings);
            Type client = named.ClientType;
            if (!typeof(T).IsAssignableFrom(client) || !typeof(GeneratedClient).IsAssignableFrom(client) || client.IsAbstract)
                throw new ArgumentException("[LessPyClient(typeof(" + client.Name + "))] on " + typeof(T).Name + ": " + client.Name
                    + " must be a class deriving from GeneratedClient that implements " + typeof(T).Name
                    + " (regenerate it with `lesspy stub MODULE.py --client`)", "T");
            ConstructorInfo ctor = client.GetConstructor(new[] { typeof(PythonCalls) });
            if (ctor == null)
                throw new ArgumentException(client.Name + " has no public constructor taking a PythonCalls (regenerate it with `lesspy stub MODULE.py --client`)", "T");
            var calls = new PythonCalls(channel, bindings);
            try
            {
                return (T)ctor.Invoke(new object[] { calls });
            }
            catch (TargetInvocationException e)
            {
                calls.Dispose();
                System.Runtime.ExceptionServices.ExceptionDispatchInfo.Capture(e.InnerException ?? e).Throw();
                throw;
            }
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
                throw new ServerUnavailableException("no lesspy server is serving " + folder.Path
                    + (folder.SessionName != null ? " (" + WorkFolder.ServedSessionsText() + ")" : "") + ": " + how
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
                    + ") is no longer running: its files are stale; " + how
                    + (folder.SessionName != null ? " (" + WorkFolder.ServedSessionsText() + ")" : ""));
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
