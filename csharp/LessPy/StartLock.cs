using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.IO;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// The start lock of a work folder (PROTOCOL.md section 1): an exclusive record lock on byte 0 of
    /// <c>lesspy.lock</c> (mode 0600, never removed), held while finding, starting or replacing the folder's server.
    /// POSIX record locks belong to a process, so threads of one process also serialise on an in-process lock.
    /// </summary>
    internal sealed class StartLock : IDisposable
    {
        static readonly Dictionary<string, object> InProcess = new Dictionary<string, object>();
        readonly object _gate;
        FileStream _stream;
        int _fd = -1;                   // Linux: the lock file's descriptor (libc), else -1 and _stream holds it

        StartLock(object gate, FileStream stream, int fd)
        {
            _gate = gate;
            _stream = stream;
            _fd = fd;
        }

        /// <summary>
        /// Takes the lock of <paramref name="folder"/> (created if missing), waiting up to <paramref name="timeout"/>. On
        /// Linux the folder and the lock file are checked first (this user's own and private, never through a link: a
        /// folder that fails is left untouched) and a missing lock file is created O_EXCL, 0600.
        /// </summary>
        /// <exception cref="ServerUnavailableException">Another process held it for the whole timeout.</exception>
        /// <exception cref="UntrustedWorkFolderException">The folder or lesspy.lock is not this user's own and private.</exception>
        public static StartLock Acquire(WorkFolder folder, TimeSpan timeout)
        {
            object gate;
            lock (InProcess)
            {
                if (!InProcess.TryGetValue(folder.Path, out gate)) InProcess[folder.Path] = gate = new object();
            }
            var sw = Stopwatch.StartNew();
            if (!Monitor.TryEnter(gate, timeout))
                throw new ServerUnavailableException("another thread of this process held the start lock of " + folder.Path + " for " + timeout.TotalSeconds + " s");
            if (Posix.IsLinux)
            {
                int fd = -1;
                try
                {
                    string path = folder.File(Wire.LockFile);
                    fd = folder.OpenFile(Wire.LockFile, true, true);
                    int delay = 1;
                    while (!Posix.TryLockFirstByte(fd, path))
                    {
                        if (sw.Elapsed > timeout) throw HeldTooLong(path, timeout);
                        Thread.Sleep(delay);
                        if (delay < 20) delay *= 2;
                    }
                    return new StartLock(gate, null, fd);
                }
                catch
                {
                    if (fd >= 0) Posix.Close(fd);
                    Monitor.Exit(gate);
                    throw;
                }
            }
            FileStream fs = null;
            try
            {
                string path = folder.File(Wire.LockFile);
                bool existed = File.Exists(path);
                fs = new FileStream(path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
                if (!existed) WorkFolder.SetMode(path, 0x180);        // 0600
                int delay = 1;
                while (true)
                {
                    try
                    {
                        fs.Lock(0, 1);
                        return new StartLock(gate, fs, -1);
                    }
                    catch (IOException)
                    {
                        if (sw.Elapsed > timeout) throw HeldTooLong(path, timeout);
                        Thread.Sleep(delay);
                        if (delay < 20) delay *= 2;
                    }
                }
            }
            catch
            {
                if (fs != null) fs.Dispose();
                Monitor.Exit(gate);
                throw;
            }
        }

        static ServerUnavailableException HeldTooLong(string path, TimeSpan timeout)
        {
            return new ServerUnavailableException("another process held the start lock " + path + " for " + timeout.TotalSeconds
                + " s while starting the folder's server; if nothing is starting, a stuck process holds it (see `fuser " + path + "`)");
        }

        /// <summary>Releases the lock (closing the file releases the record lock). Idempotent.</summary>
        public void Dispose()
        {
            if (_fd >= 0)
            {
                Posix.UnlockFirstByte(_fd);
                Posix.Close(_fd);
                _fd = -1;
                Monitor.Exit(_gate);
                return;
            }
            if (_stream == null) return;
            try { _stream.Unlock(0, 1); }
            catch (IOException) { }
            _stream.Dispose();
            _stream = null;
            Monitor.Exit(_gate);
        }
    }
}
