using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Runtime.InteropServices;

namespace LessPy
{
    /// <summary>A server's work folder (PROTOCOL.md section 1): where it is, and what its files say.</summary>
    internal sealed class WorkFolder
    {
        public const string PidFile = "python.pid";
        public const string PortFile = "notify.port";
        public const string KeyFile = "session.key";
        public const string LogFile = "server.log";
        public const string ModuleFile = "python.module";
        /// <summary>A named session's server writes the session's name here; Connect(name) checks it (PROTOCOL.md section 1).</summary>
        public const string SessionNameFile = "session.name";
        /// <summary>The folder of named sessions in the Jupyter runtime dir.</summary>
        public const string Sessions = "lesspy";
        /// <summary>A stale server's files, removed before a new server starts (never server.log nor lesspy.lock).</summary>
        static readonly string[] ServerFiles = { PortFile, PidFile, KeyFile, ModuleFile, SessionNameFile, Wire.SocketFile, "req.mmf", "resp.mmf" };

        public WorkFolder(string path) { Path = FullPath(path); }

        /// <summary>
        /// Path.GetFullPath, which a path that is already absolute and normal on Unix (no empty, "." or ".." part, no
        /// trailing separator) skips: its first use is slow in a fresh Mono process.
        /// </summary>
        public static string FullPath(string path)
        {
            return IsNormalUnixPath(path) ? path : System.IO.Path.GetFullPath(path);
        }

        static bool IsNormalUnixPath(string p)
        {
            if (System.IO.Path.DirectorySeparatorChar != '/' || p.Length < 2 || p[0] != '/' || p[p.Length - 1] == '/') return false;
            for (int i = 0; i < p.Length; i++)
            {
                char c = p[i];
                if (c == '\0' || c == '\\') return false;
                if (c != '/') continue;
                // p[i + 1] exists: p does not end with '/'
                if (p[i + 1] == '/') return false;
                if (p[i + 1] != '.') continue;
                int j = i + 2;                                      // after "/."
                if (j == p.Length || p[j] == '/') return false;
                if (p[j] == '.' && (j + 1 == p.Length || p[j + 1] == '/')) return false;
            }
            return true;
        }

        public string Path { get; }

        public string File(string name) { return System.IO.Path.Combine(Path, name); }

        /// <summary>
        /// A folder for <paramref name="workFolderOrName"/> (PROTOCOL.md section 1): an argument holding a path separator
        /// (<c>./prod</c>, <c>/srv/wf</c>) is a folder. A bare name is the session <c>&lt;Jupyter runtime dir&gt;/lesspy/NAME</c>
        /// when that exists; else the directory NAME in the current directory when there is one (<c>Connect("lesspy_work")</c>);
        /// else the session (which then says nothing serves it). A folder someone else made in a shared current
        /// directory never hides one of your sessions.
        /// </summary>
        public static WorkFolder Resolve(string workFolderOrName)
        {
            string a = workFolderOrName;
            if (a.IndexOf('/') >= 0 || a.IndexOf('\\') >= 0 || a.IndexOf(System.IO.Path.DirectorySeparatorChar) >= 0 || a == "." || a == "..")
                return new WorkFolder(a);
            var session = new WorkFolder(System.IO.Path.Combine(JupyterRuntimeDir(), Sessions, a));
            if (!Exists(session.Path) && DirectoryExists(a)) return new WorkFolder(a);
            return session;
        }

        /// <summary>Whether anything (a symbolic link included) is at <paramref name="path"/>.</summary>
        static bool Exists(string path)
        {
            if (Posix.IsLinux) return Posix.LinkStatus(path).HasValue;
            return Directory.Exists(path) || System.IO.File.Exists(path);
        }

        string _sessionParent;
        bool _sessionKnown;

        /// <summary>
        /// <c>&lt;Jupyter runtime dir&gt;/lesspy</c> when this folder is a named session's (<c>.../lesspy/NAME</c>, however it
        /// was given: a name or its full path), else null. Compared as full paths, as the Python side does.
        /// </summary>
        internal string SessionParent
        {
            get
            {
                if (!_sessionKnown)
                {
                    string p = Path.Length > 1 ? Path.TrimEnd('/', System.IO.Path.DirectorySeparatorChar) : Path;
                    string parent = System.IO.Path.GetDirectoryName(p);
                    if (parent != null && System.IO.Path.GetFileName(parent) == Sessions)
                    {
                        try
                        {
                            string sessions = FullPath(System.IO.Path.Combine(JupyterRuntimeDir(), Sessions)).TrimEnd('/', System.IO.Path.DirectorySeparatorChar);
                            if (sessions == parent) _sessionParent = parent;
                        }
                        catch (Exception) { }          // no usable runtime dir: not a session
                    }
                    _sessionKnown = true;
                }
                return _sessionParent;
            }
        }

        /// <summary>The session's name when this is a named session's folder (<see cref="SessionParent"/>), else null.</summary>
        public string SessionName
        {
            get { return SessionParent != null ? System.IO.Path.GetFileName(Path.TrimEnd('/', System.IO.Path.DirectorySeparatorChar)) : null; }
        }

        /// <summary>Jupyter's runtime dir, resolved as jupyter_core does (PROTOCOL.md section 1).</summary>
        public static string JupyterRuntimeDir()
        {
            string v = Env("JUPYTER_RUNTIME_DIR");
            if (v != null) return v;
            v = Env("JUPYTER_DATA_DIR");
            if (v != null) return System.IO.Path.Combine(v, "runtime");
            string home = Env("HOME") ?? Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows))
            {
                string appData = Env("APPDATA") ?? Environment.GetFolderPath(Environment.SpecialFolder.ApplicationData);
                return System.IO.Path.Combine(appData, "jupyter", "runtime");
            }
            if (RuntimeInformation.IsOSPlatform(OSPlatform.OSX))
                return System.IO.Path.Combine(home, "Library", "Jupyter", "runtime");
            string xdg = Env("XDG_DATA_HOME") ?? System.IO.Path.Combine(home, ".local", "share");
            return System.IO.Path.Combine(xdg, "jupyter", "runtime");
        }

        static string Env(string name)
        {
            string v = Environment.GetEnvironmentVariable(name);
            return string.IsNullOrEmpty(v) ? null : v;
        }

        public bool HasServerFiles
        {
            get { return FileExists(File(PortFile)) && FileExists(File(PidFile)); }
        }

        /// <summary>As File.Exists; through libc on Linux (see <see cref="ReadText"/>).</summary>
        public static bool FileExists(string path)
        {
            return Posix.IsLinux ? Posix.KindOf(path) == PathKind.File : System.IO.File.Exists(path);
        }

        /// <summary>As Directory.Exists; through libc on Linux (see <see cref="ReadText"/>).</summary>
        public static bool DirectoryExists(string path)
        {
            return Posix.IsLinux ? Posix.KindOf(path) == PathKind.Directory : Directory.Exists(path);
        }

        /// <summary>
        /// The text of a small file of a work folder (File.ReadAllText); through libc on Linux, where Mono's first file
        /// stream is slow in a fresh process, and there only from a folder and a file that are
        /// this user's own and private (<see cref="OpenFile(string, bool, bool)"/>).
        /// </summary>
        /// <exception cref="UntrustedWorkFolderException">The folder or the file is not this user's own and private.</exception>
        public static string ReadText(string path)
        {
            if (!Posix.IsLinux) return System.IO.File.ReadAllText(path);
            var folder = new WorkFolder(System.IO.Path.GetDirectoryName(path));
            string name = System.IO.Path.GetFileName(path);
            int fd = folder.OpenFile(name, false, false);
            try { return Posix.ReadAllText(fd, path); }
            finally { Posix.Close(fd); }
        }

        // ---------------------------------------------------------------- trust (PROTOCOL.md section 1, the ownership rule)

        /// <summary>
        /// Opens this folder as a descriptor (O_PATH, never through a symbolic link) after checking that it is a directory
        /// owned by this user with no group or other permission bits (Linux). With <paramref name="tighten"/> a folder of
        /// ours that others may enter is set to 0700 (Initialize's own folder); otherwise it is refused. The caller closes it.
        /// </summary>
        /// <exception cref="UntrustedWorkFolderException">It is a link, not a directory, another user's, or not private.</exception>
        /// <exception cref="IOException">It cannot be opened (<see cref="FileNotFoundException"/> or DirectoryNotFound when missing).</exception>
        public int OpenChecked(bool tighten)
        {
            int errno;
            int fd;
            string parent = Posix.IsLinux ? SessionParent : null;
            if (parent != null)
            {
                // a named session: through <runtime dir>/lesspy/, checked first, so a rename in it after the check changes nothing
                int pfd = OpenSessionParent(parent);
                try { fd = Posix.OpenFolderAt(pfd, SessionName, out errno); }
                finally { Posix.Close(pfd); }
            }
            else fd = Posix.OpenFolder(Path, out errno);
            if (fd < 0)
            {
                FileStatus? at = Posix.LinkStatus(Path);
                if (at.HasValue && at.Value.IsLink)
                    throw Refuse(Path, "the work folder " + Path + " is a symbolic link: LessPy never follows a link to a work folder (whoever "
                        + "can change the link could point it at a folder of theirs). Use the real folder's path, or remove the link");
                if (at.HasValue && !at.Value.IsDirectory)
                    throw Refuse(Path, "the work folder " + Path + " is not a directory (mode " + at.Value.Permissions + ", type "
                        + (at.Value.Mode >> 12) + "): remove it or choose another work folder");
                throw Posix.Error("cannot open the work folder " + Path, Path, errno);
            }
            try
            {
                FileStatus st = Posix.Status(fd, Path);
                uint me = Posix.UserId;
                if (!st.IsDirectory) throw Refuse(Path, "the work folder " + Path + " is not a directory: remove it or choose another work folder");
                if (st.Uid != me)
                    throw Refuse(Path, "the work folder " + Path + " belongs to " + UserText(st.Uid) + ", not to you (" + UserText(me) + "): another "
                        + "user made it and could read or answer everything sent through it, so LessPy will not use it. Remove it if you "
                        + "trust nothing in it, or use a work folder of your own (one outside a shared directory such as /tmp)");
                if ((st.Mode & 0x3F) != 0)
                {
                    if (!tighten)
                        throw Refuse(Path, "the work folder " + Path + " has mode " + st.Permissions + ": group or others may use it, and a "
                            + "lesspy work folder must be private to you (0700). Run `chmod 700 " + Path + "` if everything in it is yours, "
                            + "or start its server again (it makes its folder private)");
                    Posix.SetFolderMode(fd, 0x1C0, Path);          // 0700: ours, through the descriptor checked
                }
                return fd;
            }
            catch
            {
                Posix.Close(fd);
                throw;
            }
        }

        /// <summary>
        /// Opens <c>&lt;runtime dir&gt;/lesspy/</c> (the folder of named sessions; Linux) without following a link and checks
        /// it: a directory of this user's that nobody else may write (whoever can write it can rename, swap or hide the
        /// sessions in it). One of ours that others may only list (an older lesspy made it 0755) is made 0700: session names
        /// are nobody else's business. The caller closes the descriptor.
        /// </summary>
        /// <exception cref="UntrustedWorkFolderException">It is a link, not a directory, another user's, or writable by others.</exception>
        static int OpenSessionParent(string parent)
        {
            int errno;
            int fd = Posix.OpenFolder(parent, out errno);
            if (fd < 0)
            {
                FileStatus? at = Posix.LinkStatus(parent);
                if (at.HasValue && at.Value.IsLink)
                    throw Refuse(parent, "the folder of named sessions " + parent + " is a symbolic link: LessPy never follows one (whoever can "
                        + "change it could point your sessions at a folder of theirs). Remove the link, or set JUPYTER_RUNTIME_DIR to a private folder");
                if (at.HasValue && !at.Value.IsDirectory)
                    throw Refuse(parent, "the folder of named sessions " + parent + " is not a directory: remove it");
                throw Posix.Error("cannot open the folder of named sessions " + parent, parent, errno);
            }
            try
            {
                FileStatus st = Posix.Status(fd, parent);
                uint me = Posix.UserId;
                if (!st.IsDirectory) throw Refuse(parent, "the folder of named sessions " + parent + " is not a directory: remove it");
                if (st.Uid != me)
                    throw Refuse(parent, "the folder of named sessions " + parent + " belongs to " + UserText(st.Uid) + ", not to you (" + UserText(me)
                        + "): its owner could rename, swap or hide your sessions in it, so LessPy will not use it. Remove it, or set "
                        + "JUPYTER_RUNTIME_DIR to a private folder of yours");
                if ((st.Mode & 0x12) != 0)              // 022: group or others may write
                    throw Refuse(parent, "the folder of named sessions " + parent + " has mode " + st.Permissions + ": others may write it, and "
                        + "so rename, swap or hide your sessions in it; LessPy will not use it. If everything in it is yours, run `chmod 700 "
                        + parent + "`");
                if ((st.Mode & 0x3F) != 0) Posix.SetFolderMode(fd, 0x1C0, parent);       // ours, others may only list it: 0700
                return fd;
            }
            catch
            {
                Posix.Close(fd);
                throw;
            }
        }

        /// <summary>Checks this folder (<see cref="OpenChecked"/> without tightening; Linux, elsewhere a no-op).</summary>
        /// <exception cref="UntrustedWorkFolderException">It is a link, not a directory, another user's, or not private.</exception>
        /// <remarks>
        /// A named session's folder must also hold that session: the server wrote the name it serves into session.name, and
        /// a folder renamed into this name's place (another session of the same user's) is refused. A folder without
        /// session.name has no server of this version (nothing is sent before that is found).
        /// </remarks>
        public void Check()
        {
            if (!Posix.IsLinux) return;
            int dir = OpenChecked(false);
            try
            {
                if (SessionParent != null) CheckSessionName(dir);
            }
            finally { Posix.Close(dir); }
        }

        void CheckSessionName(int dir)
        {
            string path = File(SessionNameFile);
            int fd;
            try { fd = Posix.OpenAt(dir, SessionNameFile, false, false, path); }
            catch (FileNotFoundException) { return; }
            string found;
            try
            {
                CheckOpenFile(fd, path, false);
                found = Posix.ReadAllText(fd, path);
            }
            finally { Posix.Close(fd); }
            string name = SessionName;
            if (found != name)
                throw Refuse(Path, Path + " holds the session '" + found + "', not '" + name + "' (its " + SessionNameFile + " says so): the folder "
                    + "was renamed while its server ran, and LessPy will not call another session's code under this name. Stop that server "
                    + "(lesspy stop " + Path + ") and serve '" + name + "' again");
        }

        /// <summary>
        /// Opens <paramref name="name"/> in this folder (checked, <see cref="OpenChecked"/>) never through a symbolic link, and
        /// checks it is a regular file owned by this user without group or other permission bits (Linux only). With
        /// <paramref name="create"/> a missing file is created O_EXCL, 0600. The caller closes the descriptor.
        /// </summary>
        /// <exception cref="UntrustedWorkFolderException">The folder or the file is not this user's own and private.</exception>
        /// <exception cref="IOException">It cannot be opened (<see cref="FileNotFoundException"/> when missing).</exception>
        public int OpenFile(string name, bool write, bool create) { return OpenFile(name, write, create, false); }

        /// <summary><see cref="OpenFile(string, bool, bool)"/>; with <paramref name="anyMode"/> the permission bits are not checked.</summary>
        int OpenFile(string name, bool write, bool create, bool anyMode)
        {
            string path = File(name);
            int dir = OpenChecked(false);
            int fd;
            try
            {
                try { fd = Posix.OpenAt(dir, name, write, create, path); }
                catch (IOException)
                {
                    FileStatus? at = Posix.LinkStatus(path);
                    if (at.HasValue && at.Value.IsLink)
                        throw Refuse(path, path + " is a symbolic link: LessPy never follows a link inside a work folder. Remove it (rm "
                            + path + ") and start the folder's server again");
                    throw;
                }
            }
            finally { Posix.Close(dir); }
            try
            {
                CheckOpenFile(fd, path, anyMode);
                return fd;
            }
            catch
            {
                Posix.Close(fd);
                throw;
            }
        }

        /// <summary>Checks a file of this folder where it stands: <see cref="OpenFile(string, bool, bool)"/>, then closes it (Linux; elsewhere a no-op).</summary>
        public void CheckFile(string name)
        {
            if (!Posix.IsLinux) return;
            Posix.Close(OpenFile(name, false, false));
        }

        static void CheckOpenFile(int fd, string path, bool anyMode)
        {
            FileStatus st = Posix.Status(fd, path);
            uint me = Posix.UserId;
            if (!st.IsRegular)
                throw Refuse(path, path + " is not a regular file (type " + (st.Mode >> 12) + "): it was not written by a lesspy server; remove it");
            if (st.Uid != me)
                throw Refuse(path, path + " belongs to " + UserText(st.Uid) + ", not to you (" + UserText(me) + "): LessPy uses only files of "
                    + "your own in a work folder. Remove it (rm " + path + ") if you do not know where it comes from, and start the server again");
            if ((st.Mode & 0x3F) != 0 && !anyMode)
                throw Refuse(path, path + " has mode " + st.Permissions + ": group or others may read or change it, and the files of a "
                    + "lesspy work folder must be private (0600). A lesspy server older than this client may have written it: "
                    + "stop that server, upgrade its lesspy-kernel package and start it again");
        }

        static UntrustedWorkFolderException Refuse(string path, string message) { return new UntrustedWorkFolderException(path, message); }

        /// <summary>"uid 1001 (alice)": the user name from /etc/passwd when it is there.</summary>
        internal static string UserText(uint uid)
        {
            string name = null;
            try
            {
                foreach (string line in System.IO.File.ReadAllLines("/etc/passwd"))
                {
                    string[] f = line.Split(':');
                    if (f.Length > 2 && f[2] == uid.ToString(CultureInfo.InvariantCulture)) { name = f[0]; break; }
                }
            }
            catch (Exception) { }
            return "uid " + uid + (name != null ? " (" + name + ")" : "");
        }

        /// <summary>The ASCII decimal in <paramref name="name"/>, or -1 when missing or unreadable.</summary>
        public int ReadNumber(string name)
        {
            try
            {
                int v;
                string t = ReadText(File(name)).Trim();
                return int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out v) ? v : -1;
            }
            catch (IOException) { return -1; }
            catch (UnauthorizedAccessException) { return -1; }
        }

        /// <summary>
        /// The module a headless server serves (python.module, as a full path), or null when the file is absent or
        /// unreadable (a notebook's server writes none).
        /// </summary>
        /// <exception cref="UntrustedWorkFolderException">The folder or python.module is not this user's own and private.</exception>
        public string ServedModule()
        {
            try
            {
                string text = ReadText(File(ModuleFile)).Trim();
                return text.Length == 0 ? null : System.IO.Path.GetFullPath(text);
            }
            catch (IOException) { return null; }
            catch (UnauthorizedAccessException) { return null; }
            catch (ArgumentException) { return null; }
            catch (NotSupportedException) { return null; }
        }

        /// <summary>
        /// After a connection reached a new server run in this folder (a restart, or another app's server): throws unless
        /// that server serves the module the proxy was bound to (<paramref name="bound"/>: a module path, "" for a server
        /// that names none, null when nothing was recorded). A proxy never silently calls another module's code.
        /// </summary>
        public void CheckStillServes(string bound)
        {
            if (bound == null) return;
            string now = ServedModule();
            if (now == null ? bound.Length == 0 : now == bound) return;
            int pid = ReadNumber(PidFile);
            throw new ServerUnavailableException("the server of " + Path + " changed under this connection: it was bound to "
                + (bound.Length == 0 ? "a server that names no module (a notebook's %lesspy serve)" : "the module " + bound)
                + ", and the server now answering there (pid " + pid + ") " + (now == null ? "names no module (no " + ModuleFile + ")" : "serves " + now)
                + ". LessPy will not call another module's code through this interface, so this call was not sent. Another app probably "
                + "started its own server in this work folder: give each app its own work folder, then connect again");
        }

        /// <summary>
        /// The pid in python.pid, or -1 when missing or unreadable, for deciding whether the folder is stale: the file must
        /// be this user's own and not a link, but its permission bits are not checked (an older server, or a test, wrote it
        /// 0644; a dead pid's files are removed, and a live one's are checked in full before use).
        /// </summary>
        public int ReadPidForStaleness()
        {
            if (!Posix.IsLinux) return ReadNumber(PidFile);
            try
            {
                int fd = OpenFile(PidFile, false, false, true);
                string t;
                try { t = Posix.ReadAllText(fd, File(PidFile)).Trim(); }
                finally { Posix.Close(fd); }
                int v;
                return int.TryParse(t, NumberStyles.None, CultureInfo.InvariantCulture, out v) ? v : -1;
            }
            catch (IOException) { return -1; }
            catch (UnauthorizedAccessException) { return -1; }
        }

        /// <summary>The HMAC key: the ASCII bytes of session.key's trimmed text.</summary>
        public byte[] ReadKey()
        {
            string t = ReadText(File(KeyFile)).Trim();
            return System.Text.Encoding.ASCII.GetBytes(t);
        }

        public static bool ProcessAlive(int pid)
        {
            if (pid <= 0) return false;
            if (Posix.IsLinux) return Posix.ProcessAlive(pid);
            try
            {
                using (var p = Process.GetProcessById(pid)) return !p.HasExited;
            }
            catch (ArgumentException) { return false; }
            catch (InvalidOperationException) { return false; }
            catch (System.ComponentModel.Win32Exception) { return true; }   // exists, but not ours to inspect
        }

        /// <summary>Removes a stale server's files, lane files included (never server.log nor lesspy.lock).</summary>
        public void RemoveServerFiles()
        {
            if (Posix.IsLinux)
            {
                // through the checked folder's descriptor: a folder or parent swapped after the check loses nothing of another's
                int dir;
                try { dir = OpenChecked(false); }
                catch (IOException) { return; }
                catch (UnauthorizedAccessException) { return; }
                try
                {
                    var names = new System.Collections.Generic.List<string>(ServerFiles);
                    try
                    {
                        foreach (var f in Directory.GetFiles("/proc/self/fd/" + dir, "lane-*.mmf")) names.Add(System.IO.Path.GetFileName(f));
                    }
                    catch (IOException) { }
                    catch (UnauthorizedAccessException) { }
                    foreach (var n in names) Posix.UnlinkAt(dir, n);
                }
                finally { Posix.Close(dir); }
                return;
            }
            var files = new System.Collections.Generic.List<string>();
            foreach (var f in ServerFiles) files.Add(File(f));
            try { files.AddRange(Directory.GetFiles(Path, "lane-*.mmf")); }
            catch (IOException) { }
            catch (UnauthorizedAccessException) { }
            foreach (var f in files)
            {
                try { System.IO.File.Delete(f); }
                catch (IOException) { }
                catch (UnauthorizedAccessException) { }
            }
        }

        [DllImport("libc", EntryPoint = "chmod", SetLastError = true)]
        static extern int Chmod(string path, uint mode);

        /// <summary>Sets POSIX permission bits (no-op on Windows, or where libc cannot be called).</summary>
        public static void SetMode(string path, int mode)
        {
            if (RuntimeInformation.IsOSPlatform(OSPlatform.Windows)) return;
            try { Chmod(path, (uint)mode); }
            catch (DllNotFoundException) { }
            catch (EntryPointNotFoundException) { }
        }

        /// <summary>
        /// Creates the folder (mode 0700) if it does not exist; on Linux then checks it is this user's own, not a link, and
        /// makes it private if others may enter it (<see cref="OpenChecked"/>).
        /// </summary>
        /// <exception cref="UntrustedWorkFolderException">It is a link, not a directory, or another user's.</exception>
        public void Create()
        {
            if (Posix.IsLinux)
            {
                Posix.MakeDirectory(Path, 0x1C0);          // 0700; an existing one is checked
                Posix.Close(OpenChecked(true));
                return;
            }
            if (Directory.Exists(Path)) return;
            Directory.CreateDirectory(Path);
            SetMode(Path, 0x1C0);          // 0700
        }

        /// <summary>
        /// The named sessions served on this machine: the names under <c>&lt;Jupyter runtime dir&gt;/lesspy/</c> whose folder
        /// holds a notify.port and whose python.pid names a live process, sorted (no server is asked). Empty when there is
        /// none or the folder cannot be read.
        /// </summary>
        public static string[] ServedSessions()
        {
            try
            {
                string parent = System.IO.Path.Combine(JupyterRuntimeDir(), Sessions);
                var names = new System.Collections.Generic.List<string>();
                foreach (string dir in Directory.GetDirectories(parent))
                {
                    if (!FileExists(System.IO.Path.Combine(dir, PortFile))) continue;
                    int pid;
                    try { pid = new WorkFolder(dir).ReadNumber(PidFile); }
                    catch (Exception) { continue; }
                    if (ProcessAlive(pid)) names.Add(System.IO.Path.GetFileName(dir));
                }
                names.Sort(StringComparer.Ordinal);
                return names.ToArray();
            }
            catch (Exception) { return new string[0]; }      // no runtime dir, not readable: nothing to list
        }

        /// <summary>"sessions served here: a, b" or "no session is served here", for a name that reached none.</summary>
        public static string ServedSessionsText()
        {
            string[] names = ServedSessions();
            return names.Length > 0 ? "sessions served here: " + string.Join(", ", names) : "no session is served here";
        }

        public string NotServedMessage()
        {
            return "no lesspy server is serving " + Path + ": run %lesspy serve in the notebook (or `python -m lesspy_kernel serve --module M --work-folder " + Path + "`)";
        }
    }
}
