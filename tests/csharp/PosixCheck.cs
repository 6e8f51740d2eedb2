// Checks LessPy's libc paths (Linux) against the managed APIs they replace: small file reads, File/Directory.Exists,
// Path.GetFullPath's shortcut, the process id, and lane files mapped through mmap (growth included).
// Build with the library sources to reach its internals:
//   mcs -unsafe -optimize+ -out:PosixCheck.exe csharp/LessPy/*.cs tests/csharp/PosixCheck.cs
// Run: mono PosixCheck.exe SCRATCH_DIR   (prints CHECK <name> ok|FAILED ...)
using System;
using System.Diagnostics;
using System.IO;
using System.Runtime.InteropServices;
using System.Text;
using LessPy;

static unsafe class PosixCheck
{
    static bool _ok = true;

    static void Check(string name, bool ok, string detail = "")
    {
        Console.WriteLine("CHECK " + name + (ok ? " ok" : " FAILED " + detail));
        _ok &= ok;
    }

    [DllImport("libc", SetLastError = true)] static extern int symlink(string target, string linkpath);

    static int Main(string[] args)
    {
        if (args.Length != 1)
        {
            Console.Error.WriteLine("usage: PosixCheck.exe <scratch dir>");
            return 2;
        }
        string dir = Path.GetFullPath(args[0]);
        Directory.CreateDirectory(dir);
        Check("is_linux", Posix.IsLinux && Posix.Is64BitLinux == (IntPtr.Size == 8));

        // ---- small file reads: what File.ReadAllText returns, the same exceptions
        string plain = Path.Combine(dir, "plain.txt");
        File.WriteAllText(plain, "  12345\n", new UTF8Encoding(false));
        Check("read_plain", Posix.ReadAllText(plain) == File.ReadAllText(plain));
        string bom = Path.Combine(dir, "bom.txt");
        File.WriteAllText(bom, "unix\u00e9", new UTF8Encoding(true));
        Check("read_bom", Posix.ReadAllText(bom) == File.ReadAllText(bom) && Posix.ReadAllText(bom) == "unix\u00e9");
        string big = Path.Combine(dir, "big.txt");
        File.WriteAllText(big, new string('k', 5000) + "end", new UTF8Encoding(false));
        Check("read_big", Posix.ReadAllText(big) == File.ReadAllText(big));
        string empty = Path.Combine(dir, "empty.txt");
        File.WriteAllText(empty, "");
        Check("read_empty", Posix.ReadAllText(empty) == "");
        Check("read_proc", Posix.ReadAllText("/proc/self/stat").IndexOf(')') > 0);
        Check("read_missing", Throws<FileNotFoundException>(() => Posix.ReadAllText(Path.Combine(dir, "missing.txt"))));
        Check("read_dir", Throws<IOException>(() => Posix.ReadAllText(dir)) || Throws<UnauthorizedAccessException>(() => Posix.ReadAllText(dir)));

        // ---- File.Exists and Directory.Exists
        string sub = Path.Combine(dir, "sub");
        Directory.CreateDirectory(sub);
        string dirLink = Path.Combine(dir, "dirlink");
        string broken = Path.Combine(dir, "broken");
        symlink(sub, dirLink);
        symlink(Path.Combine(dir, "nowhere"), broken);
        string[] paths = { plain, sub, dirLink, broken, Path.Combine(dir, "missing.txt"), Path.Combine(plain, "below"), "/proc/self/stat", "/" };
        foreach (string p in paths)
        {
            bool file = WorkFolder.FileExists(p), directory = WorkFolder.DirectoryExists(p);
            Check("exists:" + p.Replace(dir, "D"), file == File.Exists(p) && directory == Directory.Exists(p),
                "libc says file " + file + " dir " + directory + ", managed " + File.Exists(p) + " " + Directory.Exists(p));
        }

        // ---- Path.GetFullPath's shortcut gives what GetFullPath gives
        string[] full = { "/tmp/a/b", "/tmp/a/b/", "/tmp//a", "/tmp/./a", "/tmp/../a", "/tmp/a/.", "/tmp/a/..", "/tmp/.hidden/a",
                          "/tmp/..x/a", "/tmp/a.", "/", "relative/x", ".", "/tmp/a\\b" };
        foreach (string p in full)
            Check("full_path:" + p, WorkFolder.FullPath(p) == Path.GetFullPath(p), WorkFolder.FullPath(p) + " != " + Path.GetFullPath(p));

        using (var me = Process.GetCurrentProcess()) Check("process_id", Posix.ProcessId == me.Id);

        // ---- a lane file mapped twice (writer and reader) through libc, grown by the writer
        string lane = Path.Combine(dir, "lane-0.req.mmf");
        const ulong session = 0x1122334455667788UL;
        var header = new byte[4096];
        Encoding.ASCII.GetBytes("LPYM").CopyTo(header, 0);
        BitConverter.GetBytes((ushort)2).CopyTo(header, 4);
        BitConverter.GetBytes((ushort)64).CopyTo(header, 6);
        BitConverter.GetBytes((ulong)header.Length).CopyTo(header, 8);
        BitConverter.GetBytes(session).CopyTo(header, 40);
        File.WriteAllBytes(lane, header);
        Mapping writer = Mapping.Open(lane, session), reader = Mapping.Open(lane, session);
        Check("map_capacity", writer.Capacity == 4096 && reader.PayloadCapacity == 4096 - 64);
        writer.Base[64] = 42;
        Check("map_shared", reader.Base[64] == 42);
        byte* before = writer.Base;
        writer.EnsurePayload(100000);
        Check("map_grown", writer.Capacity == 131072 && new FileInfo(lane).Length == 131072
            && BitConverter.ToUInt64(File.ReadAllBytes(lane), 8) == 131072);
        Check("map_old_view_kept", before[64] == 42);
        writer.Base[100000] = 7;
        reader.Refresh();
        Check("map_reader_refresh", reader.Capacity == 131072 && reader.Base[100000] == 7 && reader.Base[64] == 42);
        writer.Dispose();
        reader.Dispose();
        writer.Dispose();                           // idempotent
        Check("map_disposed", writer.Base == null && writer.Capacity == 0);
        byte[] onDisk = File.ReadAllBytes(lane);
        Check("map_on_disk", onDisk[64] == 42 && onDisk[100000] == 7);
        Check("map_wrong_session", Throws<SessionChangedException>(() => Mapping.Open(lane, session + 1)));
        File.WriteAllBytes(lane, new byte[10]);
        Check("map_short", Throws<ProtocolException>(() => Mapping.Open(lane, session)));
        Check("map_missing", Throws<FileNotFoundException>(() => Mapping.Open(Path.Combine(dir, "lane-9.req.mmf"), session)));
        return _ok ? 0 : 1;
    }

    static bool Throws<E>(Action a) where E : Exception
    {
        try { a(); }
        catch (E) { return true; }
        catch (Exception) { return false; }
        return false;
    }
}
