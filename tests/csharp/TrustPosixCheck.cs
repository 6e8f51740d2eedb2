// Compiled with the LessPy sources (internal access): what Posix.Status (fstat through statx, or through the fallback for
// a libc without statx) and Posix.LinkStatus say of each path given, one line each:
//   "<statx|old> fd|link <mode octal> <uid> <size> <path>"   (fd: the path opened O_PATH | O_NOFOLLOW; "-" when it cannot be)
//   mono TrustPosixCheck.exe <path>...
using System;
using LessPy;

static class TrustPosixCheck
{
    static void Report(string how, string path)
    {
        int errno;
        int fd = Posix.OpenFolder(path, out errno);
        if (fd < 0)
        {
            // a file (O_DIRECTORY refused it) or a link: open it plainly without following a link
            try { fd = Posix.Open(path, false); }
            catch (Exception) { fd = -1; }
        }
        if (fd >= 0)
        {
            FileStatus st = Posix.Status(fd, path);
            Posix.Close(fd);
            Console.WriteLine(how + " fd " + Convert.ToString(st.Mode, 8) + " " + st.Uid + " " + st.Size + " " + path);
        }
        else Console.WriteLine(how + " fd - - - " + path);
        FileStatus? l = Posix.LinkStatus(path);
        Console.WriteLine(l.HasValue
            ? how + " link " + Convert.ToString(l.Value.Mode, 8) + " " + l.Value.Uid + " " + l.Value.Size + " " + path
            : how + " link - - - " + path);
    }

    static int Main(string[] args)
    {
        if (!Posix.IsLinux) return 2;
        foreach (string p in args) Report("statx", p);
        Posix.UseOldStatForTests();
        foreach (string p in args) Report("old", p);
        return 0;
    }
}
