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
        /// <summary>A stale server's files, removed before a new server starts (never server.log nor lesspy.lock).</summary>
        static readonly string[] ServerFiles = { PortFile, PidFile, KeyFile, ModuleFile, Wire.SocketFile, "req.mmf", "resp.mmf" };

        public WorkFolder(string path) { Path = FullPath(path); }

        /// <summary>
        /// Path.GetFullPath, which a path that is already absolute and normal on Unix (no empty, "." or ".." part, no
        /// trailing separator) skips: its first use costs a fresh Mono process about a millisecond of a Connect.
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
        /// A folder for <paramref name="workFolderOrName"/>: an argument holding a path separator, or naming an existing
        /// directory, is a folder; anything else is a session name in the Jupyter runtime dir's <c>lesspy/</c>.
        /// </summary>
        public static WorkFolder Resolve(string workFolderOrName)
        {
            string a = workFolderOrName;
            if (a.IndexOf('/') >= 0 || a.IndexOf('\\') >= 0 || a.IndexOf(System.IO.Path.DirectorySeparatorChar) >= 0 || DirectoryExists(a))
                return new WorkFolder(a);
            return new WorkFolder(System.IO.Path.Combine(JupyterRuntimeDir(), "lesspy", a));
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
        /// A small file's text (File.ReadAllText); through libc on Linux, where Mono's first file stream costs a fresh
        /// process milliseconds of a Connect.
        /// </summary>
        public static string ReadText(string path)
        {
            return Posix.IsLinux ? Posix.ReadAllText(path) : System.IO.File.ReadAllText(path);
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

        /// <summary>Creates the folder (mode 0700) if it does not exist.</summary>
        public void Create()
        {
            if (Directory.Exists(Path)) return;
            Directory.CreateDirectory(Path);
            SetMode(Path, 0x1C0);          // 0700
        }

        public string NotServedMessage()
        {
            return "no lesspy server is serving " + Path + ": run %lesspy serve in the notebook (or `python -m lesspy_kernel serve --module M --work-folder " + Path + "`)";
        }
    }
}
