using System;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;

namespace LessPy
{
    /// <summary>
    /// The few libc calls LessPy makes on Linux, where they are much cheaper on Mono than their managed forms
    /// (<see cref="System.Diagnostics.Process"/> and <see cref="RuntimeInformation"/> cost milliseconds each in a
    /// fresh process). Elsewhere <see cref="IsLinux"/> is false and callers use the managed forms.
    /// </summary>
    internal static unsafe class Posix
    {
        const int ESRCH = 3;

        [DllImport("libc", SetLastError = true)] static extern int uname(byte* buf);
        [DllImport("libc", SetLastError = true)] static extern int kill(int pid, int sig);

        static int _linux;      // 0 not yet known, 1 yes, -1 no

        /// <summary>True on Linux with libc reachable through P/Invoke (Mono maps "libc" to libc.so.6).</summary>
        public static bool IsLinux
        {
            get
            {
                if (_linux == 0) _linux = Probe() ? 1 : -1;
                return _linux > 0;
            }
        }

        static bool Probe()
        {
            if (Path.DirectorySeparatorChar != '/') return false;          // Windows: no libc to ask
            try
            {
                byte* buf = stackalloc byte[2048];                          // struct utsname: sysname comes first
                if (uname(buf) != 0) return false;
                int n = 0;
                while (n < 64 && buf[n] != 0) n++;
                return Encoding.ASCII.GetString(buf, n) == "Linux";
            }
            catch (DllNotFoundException) { return false; }
            catch (EntryPointNotFoundException) { return false; }
        }

        /// <summary>
        /// Whether process <paramref name="pid"/> runs (Linux only): kill(pid, 0) finds it (EPERM: it exists but is
        /// another user's), and /proc says it is not a zombie that has already exited.
        /// </summary>
        public static bool ProcessAlive(int pid)
        {
            if (pid <= 0) return false;
            if (kill(pid, 0) != 0 && Marshal.GetLastWin32Error() == ESRCH) return false;
            try
            {
                string stat = File.ReadAllText("/proc/" + pid + "/stat");
                int close = stat.LastIndexOf(')');
                return !(close > 0 && close + 2 < stat.Length && stat[close + 2] == 'Z');
            }
            catch (IOException) { return true; }
            catch (UnauthorizedAccessException) { return true; }
        }
    }
}
