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
        /// <summary>The errno values LessPy tells apart (Linux's, the same on x86-64 and aarch64), for every libc caller.</summary>
        internal const int EPERM = 1, ENOENT = 2, ESRCH = 3, EINTR = 4, EAGAIN = 11, EACCES = 13, EEXIST = 17, EFBIG = 27,
            ENOSPC = 28, ENOSYS = 38, EISCONN = 106, EALREADY = 114, EINPROGRESS = 115;
        const int O_RDONLY = 0, O_RDWR = 2, O_CLOEXEC = 0x80000;
        const int SEEK_END = 2;
        const int AT_FDCWD = -100, AT_SYMLINK_NOFOLLOW = 0x100, STATX_TYPE = 1, S_IFMT = 0xF000, S_IFDIR = 0x4000;
        const int StatxSize = 256, StatxMode = 28;          // struct statx (the same on every architecture): u16 stx_mode at 28
        const int PROT_READ = 1, PROT_WRITE = 2, MAP_SHARED = 1;

        [DllImport("libc", SetLastError = true)] static extern int uname(byte* buf);
        [DllImport("libc", SetLastError = true)] static extern int kill(int pid, int sig);
        [DllImport("libc")] static extern int getpid();
        [DllImport("libc", SetLastError = true)] static extern int open(byte* path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] static extern IntPtr read(int fd, byte* buf, IntPtr count);
        [DllImport("libc", SetLastError = true)] static extern int close(int fd);
        [DllImport("libc", SetLastError = true)] static extern int statx(int dirfd, byte* path, int flags, uint mask, byte* buf);
        [DllImport("libc", SetLastError = true)] static extern IntPtr lseek(int fd, IntPtr offset, int whence);
        [DllImport("libc", SetLastError = true)] static extern int ftruncate(int fd, IntPtr length);
        [DllImport("libc", SetLastError = true)] static extern IntPtr mmap(IntPtr addr, UIntPtr length, int prot, int flags, int fd, IntPtr offset);
        [DllImport("libc")] static extern IntPtr strerror(int errnum);
        [DllImport("libc")] static extern uint getuid();
        [DllImport("libc", SetLastError = true)] static extern int openat(int dirfd, byte* path, int flags, int mode);
        [DllImport("libc", SetLastError = true)] static extern int mkdir(byte* path, int mode);
        [DllImport("libc", SetLastError = true)] static extern int chmod(byte* path, int mode);
        [DllImport("libc", SetLastError = true)] static extern int unlinkat(int dirfd, byte* path, int flags);
        [DllImport("libc", SetLastError = true)] static extern int lockf(int fd, int cmd, IntPtr len);
        [DllImport("libc", SetLastError = true)] static extern int __fxstat64(int ver, int fd, byte* buf);
        [DllImport("libc", SetLastError = true)] static extern int __lxstat64(int ver, byte* path, byte* buf);

        // ---- ownership checks (the work folder rule of docs/PROTOCOL.md section 1)
        const int O_CREAT = 0x40, O_EXCL = 0x80, O_PATH = 0x200000;
        /// <summary>O_DIRECTORY and O_NOFOLLOW differ on ARM (asm-generic/fcntl.h) from x86 and most others (uname's machine, <see cref="Probe"/>).</summary>
        static bool _arm;
        static int O_DIRECTORY { get { return IsLinux && _arm ? 0x4000 : 0x10000; } }
        static int O_NOFOLLOW { get { return IsLinux && _arm ? 0x8000 : 0x20000; } }
        const int AT_EMPTY_PATH = 0x1000, STATX_MODE = 2, STATX_UID = 8, STATX_SIZE = 0x200;
        const int StatxUid = 20, StatxFileSize = 40;         // u32 stx_uid at 20, u64 stx_size at 40
        const int F_ULOCK = 0, F_TLOCK = 2;

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
                byte* machine = buf + 4 * 65;                              // Linux: six 65-byte fields, machine the fifth
                _arm = machine[0] == 'a' && (machine[1] == 'r' || (machine[1] == 'a' && machine[2] == 'r'));   // arm*, aarch64
                return Encoding.ASCII.GetString(buf, n) == "Linux";
            }
            catch (DllNotFoundException) { return false; }
            catch (EntryPointNotFoundException) { return false; }
        }

        /// <summary>True on 64-bit Linux, where file sizes and offsets fit the plain libc calls (off_t is 64 bits).</summary>
        public static bool Is64BitLinux { get { return IntPtr.Size == 8 && IsLinux; } }

        /// <summary>This process's id (Linux only; System.Diagnostics.Process is slow to start in a fresh process; Handshake.CurrentPid keeps it).</summary>
        public static int ProcessId { get { return getpid(); } }

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
                string stat = ReadAllText("/proc/" + pid + "/stat");
                int close = stat.LastIndexOf(')');
                return !(close > 0 && close + 2 < stat.Length && stat[close + 2] == 'Z');
            }
            catch (IOException) { return true; }
            catch (UnauthorizedAccessException) { return true; }
        }

        /// <summary>
        /// A small file's text, as <see cref="File.ReadAllText(string)"/> reads it (UTF-8, a byte-order mark dropped) but
        /// without FileStream, whose first use is slow in a fresh Mono process (Linux only).
        /// </summary>
        /// <exception cref="IOException">The file cannot be read (<see cref="FileNotFoundException"/> when it is missing).</exception>
        /// <exception cref="UnauthorizedAccessException">Permission denied.</exception>
        public static string ReadAllText(string path)
        {
            int fd = Open(path, O_RDONLY);
            try { return ReadAllText(fd, path); }
            finally { close(fd); }
        }

        /// <summary>
        /// What is at <paramref name="path"/>, as File.Exists and Directory.Exists tell (Linux only): statx, following
        /// symbolic links; a dangling link is a file, as File.Exists says.
        /// </summary>
        public static PathKind KindOf(string path)
        {
            byte[] p = CString(path);
            byte* buf = stackalloc byte[StatxSize];
            try
            {
                fixed (byte* b = p)
                {
                    if (statx(AT_FDCWD, b, 0, STATX_TYPE, buf) != 0)
                    {
                        if (Marshal.GetLastWin32Error() == ENOSYS) return ManagedKindOf(path);
                        return statx(AT_FDCWD, b, AT_SYMLINK_NOFOLLOW, STATX_TYPE, buf) == 0 ? PathKind.File : PathKind.None;
                    }
                }
            }
            catch (EntryPointNotFoundException) { return ManagedKindOf(path); }       // a libc older than 2.28
            return (*(ushort*)(buf + StatxMode) & S_IFMT) == S_IFDIR ? PathKind.Directory : PathKind.File;
        }

        static PathKind ManagedKindOf(string path)
        {
            return Directory.Exists(path) ? PathKind.Directory : File.Exists(path) ? PathKind.File : PathKind.None;
        }

        /// <summary>The real user id of this process.</summary>
        public static uint UserId { get { return getuid(); } }

        /// <summary>
        /// Opens the directory <paramref name="path"/> without following a symbolic link in its last part
        /// (O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC): the descriptor names that folder for <see cref="OpenAt"/>,
        /// <see cref="Status(int, string)"/> and /proc/self/fd/N. Returns -1 and the errno when it cannot (ELOOP: a link).
        /// </summary>
        public static int OpenFolder(string path, out int errno) { return OpenFolderAt(AT_FDCWD, path, out errno); }

        /// <summary>
        /// Opens the directory <paramref name="name"/> in the folder <paramref name="dirfd"/> as <see cref="OpenFolder"/> opens
        /// a path (O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC): a rename of the folder's parents changes nothing. Returns -1
        /// and the errno when it cannot (ELOOP: a link).
        /// </summary>
        public static int OpenFolderAt(int dirfd, string name, out int errno)
        {
            byte[] p = CString(name);
            while (true)
            {
                int fd;
                fixed (byte* b = p) fd = openat(dirfd, b, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC, 0);
                errno = fd >= 0 ? 0 : Marshal.GetLastWin32Error();
                if (fd >= 0 || errno != EINTR) return fd;
            }
        }

        /// <summary>Removes the file <paramref name="name"/> of the folder <paramref name="dirfd"/> (unlinkat; a link itself, never its target); false when it cannot.</summary>
        public static bool UnlinkAt(int dirfd, string name)
        {
            byte[] p = CString(name);
            fixed (byte* b = p) return unlinkat(dirfd, b, 0) == 0;
        }

        /// <summary>
        /// Opens <paramref name="name"/> in the folder <paramref name="dirfd"/> never following a symbolic link
        /// (O_NOFOLLOW | O_CLOEXEC), read-only or read-write. With <paramref name="create"/> a missing file is created
        /// with O_CREAT | O_EXCL, mode 0600 (an existing one is opened as it is: the caller checks it).
        /// </summary>
        /// <exception cref="IOException">It cannot be opened (<see cref="FileNotFoundException"/> when missing; ELOOP: a link).</exception>
        /// <exception cref="UnauthorizedAccessException">Permission denied.</exception>
        public static int OpenAt(int dirfd, string name, bool write, bool create, string pathForErrors)
        {
            byte[] p = CString(name);
            int flags = (write ? O_RDWR : O_RDONLY) | O_NOFOLLOW | O_CLOEXEC;
            while (true)
            {
                int fd;
                fixed (byte* b = p)
                {
                    fd = create ? openat(dirfd, b, flags | O_CREAT | O_EXCL, 0x180) : -1;      // 0600
                    if (!create || (fd < 0 && Marshal.GetLastWin32Error() == EEXIST)) fd = openat(dirfd, b, flags, 0);
                }
                if (fd >= 0) return fd;
                int errno = Marshal.GetLastWin32Error();
                if (errno != EINTR) throw Error("cannot open " + pathForErrors, pathForErrors, errno);
            }
        }

        /// <summary>The type, permission bits, owner and size of the open descriptor <paramref name="fd"/> (statx, AT_EMPTY_PATH).</summary>
        public static FileStatus Status(int fd, string pathForErrors)
        {
            byte* buf = stackalloc byte[StatxSize];
            byte* empty = stackalloc byte[1];
            empty[0] = 0;
            int r;
            if (!_noStatx)
            {
                try
                {
                    r = statx(fd, empty, AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID | STATX_SIZE, buf);
                    if (r != 0) throw Error("cannot inspect " + pathForErrors, pathForErrors, Marshal.GetLastWin32Error());
                    return new FileStatus(*(ushort*)(buf + StatxMode), *(uint*)(buf + StatxUid), *(long*)(buf + StatxFileSize));
                }
                catch (EntryPointNotFoundException) { _noStatx = true; }      // glibc before 2.28
            }
            FileStatus st;
            r = OldStat(fd, null, out st);
            if (r != 0) throw Error("cannot inspect " + pathForErrors, pathForErrors, Marshal.GetLastWin32Error());
            return st;
        }

        static bool _noStatx;

        /// <summary>
        /// fstat (<paramref name="path"/> null) or lstat through glibc's versioned entry points, for a libc without statx:
        /// struct stat's layout on x86-64 (st_mode at 24, st_uid at 28) and on the generic 64-bit ABI of aarch64 (16, 24),
        /// st_size at 48 on both. Returns 0 or -1 (errno set).
        /// </summary>
        /// <exception cref="PlatformNotSupportedException">Another architecture: LessPy cannot check who owns its work folder.</exception>
        static int OldStat(int fd, byte[] path, out FileStatus st)
        {
            st = default(FileStatus);
            if (IntPtr.Size != 8)
                throw new PlatformNotSupportedException("LessPy checks who owns its work folder with statx, which this libc lacks: "
                    + "use glibc 2.28 or later (Linux 4.11 or later)");
            int ver = _arm ? 0 : 1, modeAt = _arm ? 16 : 24, uidAt = _arm ? 24 : 28;       // _STAT_VER
            byte* buf = stackalloc byte[256];
            int r;
            if (path == null) r = __fxstat64(ver, fd, buf);
            else fixed (byte* p = path) r = __lxstat64(ver, p, buf);
            if (r == 0) st = new FileStatus((int)*(uint*)(buf + modeAt), *(uint*)(buf + uidAt), *(long*)(buf + 48));
            return r;
        }

        /// <summary>Test hook: use the fallback for a libc without statx (<see cref="OldStat"/>) from now on.</summary>
        internal static void UseOldStatForTests() { _noStatx = true; }

        /// <summary>What is at <paramref name="path"/> itself (a link is not followed), or null when nothing is there.</summary>
        public static FileStatus? LinkStatus(string path)
        {
            byte[] p = CString(path);
            byte* buf = stackalloc byte[StatxSize];
            if (!_noStatx)
            {
                fixed (byte* b = p)
                {
                    try
                    {
                        if (statx(AT_FDCWD, b, AT_SYMLINK_NOFOLLOW, STATX_TYPE | STATX_MODE | STATX_UID | STATX_SIZE, buf) != 0) return null;
                        return new FileStatus(*(ushort*)(buf + StatxMode), *(uint*)(buf + StatxUid), *(long*)(buf + StatxFileSize));
                    }
                    catch (EntryPointNotFoundException) { _noStatx = true; }
                }
            }
            FileStatus st;
            try { return OldStat(-1, p, out st) == 0 ? st : (FileStatus?)null; }
            catch (PlatformNotSupportedException) { return null; }
        }

        /// <summary>Creates the directory <paramref name="path"/> with <paramref name="mode"/>; false (no error) when something is already there.</summary>
        public static bool MakeDirectory(string path, int mode)
        {
            byte[] p = CString(path);
            int r;
            fixed (byte* b = p) r = mkdir(b, mode);
            if (r == 0) return true;
            int errno = Marshal.GetLastWin32Error();
            if (errno == EEXIST) return false;
            throw Error("cannot create " + path, path, errno);
        }

        /// <summary>
        /// Sets the permission bits of the directory open as <paramref name="dirfd"/> (an O_PATH descriptor from
        /// <see cref="OpenFolder"/>, checked by the caller): through /proc/self/fd/N, which names that very directory, so a
        /// rename or a link swapped in at its path after the check changes nothing (fchmod refuses an O_PATH descriptor).
        /// </summary>
        public static void SetFolderMode(int dirfd, int mode, string pathForErrors)
        {
            byte[] p = CString("/proc/self/fd/" + dirfd);
            int r;
            fixed (byte* b = p) r = chmod(b, mode);
            if (r != 0) throw Error("cannot change the mode of " + pathForErrors, pathForErrors, Marshal.GetLastWin32Error());
        }

        /// <summary>Takes the exclusive record lock on byte 0 of <paramref name="fd"/> (lockf F_TLOCK at offset 0); false when another process holds it.</summary>
        public static bool TryLockFirstByte(int fd, string path)
        {
            while (true)
            {
                if (lseek(fd, IntPtr.Zero, 0) == new IntPtr(-1)) throw Error("cannot seek " + path, path, Marshal.GetLastWin32Error());
                if (lockf(fd, F_TLOCK, (IntPtr)1) == 0) return true;
                int errno = Marshal.GetLastWin32Error();
                if (errno == EINTR) continue;
                if (errno == EACCES || errno == EAGAIN) return false;      // held by another process
                throw Error("cannot lock " + path, path, errno);
            }
        }

        /// <summary>Releases the lock <see cref="TryLockFirstByte"/> took (closing the descriptor releases it too).</summary>
        public static void UnlockFirstByte(int fd)
        {
            if (lseek(fd, IntPtr.Zero, 0) != new IntPtr(-1)) lockf(fd, F_ULOCK, (IntPtr)1);
        }

        /// <summary>A small file's text from the open descriptor <paramref name="fd"/> (see <see cref="ReadAllText(string)"/>); does not close it.</summary>
        public static string ReadAllText(int fd, string path)
        {
            var buf = new byte[256];
            int n = 0;
            while (true)
            {
                if (n == buf.Length) Array.Resize(ref buf, buf.Length * 2);
                long r;
                fixed (byte* b = buf) r = (long)read(fd, b + n, (IntPtr)(buf.Length - n));
                if (r == 0) break;
                if (r < 0)
                {
                    int errno = Marshal.GetLastWin32Error();
                    if (errno == EINTR) continue;
                    throw Error("cannot read " + path, path, errno);
                }
                n += (int)r;
            }
            int skip = n >= 3 && buf[0] == 0xEF && buf[1] == 0xBB && buf[2] == 0xBF ? 3 : 0;
            return Encoding.UTF8.GetString(buf, skip, n - skip);
        }

        /// <summary>Opens <paramref name="path"/> (close-on-exec) and returns the descriptor.</summary>
        /// <exception cref="IOException">It cannot be opened (<see cref="FileNotFoundException"/> when it is missing).</exception>
        /// <exception cref="UnauthorizedAccessException">Permission denied.</exception>
        public static int Open(string path, bool write)
        {
            return Open(path, (write ? O_RDWR : O_RDONLY) | O_NOFOLLOW);      // a lane file is never reached through a link
        }

        static int Open(string path, int flags)
        {
            byte[] p = CString(path);
            while (true)
            {
                int fd;
                fixed (byte* b = p) fd = open(b, flags | O_CLOEXEC, 0);
                if (fd >= 0) return fd;
                int errno = Marshal.GetLastWin32Error();
                if (errno != EINTR) throw Error("cannot open " + path, path, errno);
            }
        }

        /// <summary>Closes a descriptor from <see cref="Open(string, bool)"/>.</summary>
        public static void Close(int fd) { close(fd); }

        /// <summary>The size of the open file <paramref name="fd"/> in bytes (64-bit Linux).</summary>
        public static long FileLength(int fd, string path)
        {
            long n = (long)lseek(fd, IntPtr.Zero, SEEK_END);
            if (n < 0) throw Error("cannot size " + path, path, Marshal.GetLastWin32Error());
            return n;
        }

        /// <summary>Sets the size of the open file <paramref name="fd"/> (64-bit Linux).</summary>
        public static void SetFileLength(int fd, long length, string path)
        {
            while (ftruncate(fd, (IntPtr)length) != 0)
            {
                int errno = Marshal.GetLastWin32Error();
                if (errno != EINTR) throw Error("cannot resize " + path + " to " + length + " bytes", path, errno);
            }
        }

        /// <summary>Maps the first <paramref name="length"/> bytes of <paramref name="fd"/> shared, read and write (64-bit Linux).</summary>
        public static byte* Map(int fd, long length, string path)
        {
            IntPtr p = mmap(IntPtr.Zero, (UIntPtr)(ulong)length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, IntPtr.Zero);
            if (p == new IntPtr(-1)) throw Error("cannot map " + path, path, Marshal.GetLastWin32Error());
            return (byte*)p;
        }

        static byte[] CString(string s)
        {
            var b = new byte[Encoding.UTF8.GetByteCount(s) + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, b, 0);
            return b;
        }

        /// <summary>The exception File's methods throw for <paramref name="errno"/>, with the system's own words.</summary>
        internal static Exception Error(string what, string path, int errno)
        {
            string text = null;
            try { text = Marshal.PtrToStringAnsi(strerror(errno)); }
            catch (Exception) { }
            string message = what + ": " + (text ?? "error") + " (errno " + errno + ")";
            if (errno == ENOENT) return new FileNotFoundException(message, path);
            if (errno == EACCES || errno == EPERM) return new UnauthorizedAccessException(message);
            return new IOException(message);
        }
    }
}
