using System;
using System.Buffers.Binary;
using System.Collections.Generic;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Runtime.InteropServices;

namespace LessPy
{
    /// <summary>
    /// One mapped lane file (<c>lane-N.req.mmf</c> or <c>lane-N.resp.mmf</c>, PROTOCOL.md section 2), its header
    /// checked, held by a raw pointer. It grows on demand: the writer extends the file and maps it again; the reader
    /// maps it again when the header's capacity is larger than its view. A view replaced by growth stays mapped
    /// until <see cref="Dispose"/> (the old pointer keeps showing the same pages), so a view handed out earlier
    /// never points at unmapped memory while the lane lives. On 64-bit Linux the file is opened and mapped through
    /// libc (<see cref="Posix"/>): MemoryMappedFile and FileStream cost a fresh Mono process milliseconds on first use.
    /// <para>
    /// <b>No view ever points at unmapped memory, even after <see cref="Dispose"/></b> (another thread may close a lane,
    /// by a reconnect, while a view of it is being copied: reading unmapped memory kills Mono with SIGSEGV). Every range this
    /// mapping mapped belongs to its <see cref="Keeper"/>, which every view (<see cref="MappedMemoryManager"/>) references.
    /// Dispose does not unmap: it replaces each range, in one atomic <c>mmap(MAP_FIXED)</c>, with private anonymous
    /// zero memory (a reader sees zeros, a writer writes into nothing; the view's generation, bumped before, makes
    /// either throw), and gives the file back. The ranges are really unmapped by the keeper's finalizer, once no view
    /// references them. Off 64-bit Linux (MemoryMappedFile) the views themselves stay mapped until then.
    /// </para>
    /// </summary>
    internal sealed unsafe class Mapping : IDisposable
    {
        readonly string _path;
        int _fd = -1;                   // libc's descriptor (64-bit Linux), else -1 and _stream is used
        FileStream _stream;
        MemoryMappedFile _file;
        MemoryMappedViewAccessor _view;
        readonly RangeKeeper _keeper = new RangeKeeper();
        bool _pointerHeld;
        long _reserved;                 // bytes from the start of the file known to have disk blocks behind them (libc path)

        /// <summary>A request frame's blocks are reserved in steps of this many bytes (one system call per step, not per call).</summary>
        const long ReserveStep = 64 * 1024;
        /// <summary>The smallest lane file (the server refuses a smaller capacity).</summary>
        internal const long MinCapacity = 4096;
        /// <summary>The starting size of each lane file when the app does not say (server.py DEFAULT_CAPACITY).</summary>
        internal const int DefaultCapacity = 16 * 1024 * 1024;

        [DllImport("libc", SetLastError = true)] static extern int posix_fallocate(int fd, IntPtr offset, IntPtr len);

        Mapping(string path) { _path = path; }

        /// <summary>The start of the header; the payload starts at <c>Base + Wire.HeaderSize</c>.</summary>
        public byte* Base { get; private set; }

        /// <summary>
        /// Keeps every range of this mapping mapped (the file's pages until <see cref="Dispose"/>, zero pages after it) while
        /// it is reachable: a view over this mapping holds it. Taking it notes that a view exists (a mapping that never
        /// had one is unmapped at once by Dispose: only its lane's own thread ever read it, and that is done).
        /// </summary>
        public object Keeper
        {
            get
            {
                _keeper.Viewed = true;
                return _keeper;
            }
        }

        /// <summary>The mapped size in bytes, header included.</summary>
        public long Capacity { get; private set; }

        /// <summary>Bytes available for a payload in the current view (a span can address at most int.MaxValue).</summary>
        public int PayloadCapacity { get { return (int)Math.Min(Capacity - Wire.HeaderSize, Wire.MaxPayload); } }

        public string Path { get { return _path; } }

        /// <summary>Maps <paramref name="path"/> and checks its header: magic, version 2, header size, capacity, session id.</summary>
        /// <exception cref="ProtocolException">The header is not a version 2 lane file of this session.</exception>
        /// <exception cref="IOException">The file cannot be opened or mapped.</exception>
        public static Mapping Open(string path, ulong sessionId) { return Open(path, sessionId, -1); }

        /// <summary>
        /// As <see cref="Open(string, ulong)"/>, mapping <paramref name="fd"/> (owned from now on) unless it is -1: on 64-bit
        /// Linux, the file opened through its checked work folder (<see cref="WorkFolder.OpenFile(string, bool, bool)"/>).
        /// </summary>
        public static Mapping Open(string path, ulong sessionId, int fd)
        {
            var m = new Mapping(path);
            try
            {
                if (Posix.Is64BitLinux) m._fd = fd >= 0 ? fd : Posix.Open(path, true);
                else m._stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
                long length = m.FileLength();
                if (length < Wire.HeaderSize)
                    throw new ProtocolException(path + " is " + length + " bytes, shorter than its " + Wire.HeaderSize + "-byte header");
                m.Map(length);
                m.CheckHeader(sessionId);
                return m;
            }
            catch
            {
                m.Dispose();
                throw;
            }
        }

        long FileLength() { return _fd >= 0 ? Posix.FileLength(_fd, _path) : _stream.Length; }

        void Map(long length)
        {
            if (_fd >= 0)
            {
                byte* at = Posix.Map(_fd, length, _path);
                // keep the old mapping: a pointer taken from it stays valid (same file pages) until Dispose, then zero pages
                _keeper.AddRange(at, length);
                Base = at;
                Capacity = length;
                return;
            }
            if (_view != null)
            {
                // keep the old view mapped: a pointer taken from it stays valid (same file pages) while a view references it
                _keeper.AddView(new Retired(_view, _file, _pointerHeld));
                _view = null;
                _file = null;
                _pointerHeld = false;
            }
            _file = MemoryMappedFile.CreateFromFile(_stream, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, true);
            _view = _file.CreateViewAccessor(0, length, MemoryMappedFileAccess.ReadWrite);
            byte* p = null;
            _view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
            _pointerHeld = true;
            Base = p + _view.PointerOffset;
            Capacity = length;
        }

        void CheckHeader(ulong sessionId)
        {
            var h = new ReadOnlySpan<byte>(Base, Wire.HeaderSize);
            if (h[0] != 'L' || h[1] != 'P' || h[2] != 'Y' || h[3] != 'M')
                throw new ProtocolException(_path + " does not start with the magic LPYM");
            int version = BinaryPrimitives.ReadUInt16LittleEndian(h.Slice(Wire.OffVersion));
            if (version != Wire.Version)
                throw new ProtocolException(_path + " has protocol version " + version + "; this client speaks version " + Wire.Version);
            int headerSize = BinaryPrimitives.ReadUInt16LittleEndian(h.Slice(Wire.OffHeaderSize));
            if (headerSize != Wire.HeaderSize) throw new ProtocolException(_path + " has header size " + headerSize + ", not " + Wire.HeaderSize);
            ulong cap = BinaryPrimitives.ReadUInt64LittleEndian(h.Slice(Wire.OffCapacity));
            if (cap < Wire.HeaderSize || cap > (ulong)Capacity)
                throw new ProtocolException(_path + " says its capacity is " + cap + " but the file is " + Capacity + " bytes");
            ulong session = BinaryPrimitives.ReadUInt64LittleEndian(h.Slice(Wire.OffSession));
            if (session != sessionId)
                throw new SessionChangedException(_path + " belongs to another server run (session " + session.ToString("x16")
                    + ", the hello said " + sessionId.ToString("x16") + ")");
        }

        /// <summary>
        /// The file size that holds a payload of <paramref name="payload"/> bytes (at most <see cref="Wire.MaxPayload"/>): the
        /// smallest power of two at least header + payload and at least <see cref="MinCapacity"/>, whatever the current
        /// capacity (PROTOCOL.md section 2, "Growth"; the Python server's mapping.grown_size is the same rule).
        /// </summary>
        internal static long GrownSize(long payload)
        {
            long size = MinCapacity;
            while (size < Wire.HeaderSize + payload) size *= 2;
            return size;
        }

        /// <summary>
        /// Writer side: makes room for a payload of <paramref name="payload"/> bytes, extending the file to
        /// <see cref="GrownSize"/> and mapping it again; writes the new capacity into the header.
        /// The caller writes the sequence after this (PROTOCOL.md section 2, "Growth").
        /// </summary>
        public void EnsurePayload(long payload)
        {
            if (payload <= PayloadCapacity)
            {
                if (_fd >= 0 && Wire.HeaderSize + payload > _reserved) Reserve(Wire.HeaderSize + payload);
                return;
            }
            if (payload > Wire.MaxPayload)
                throw new PayloadTooLargeException("a payload of " + payload + " bytes is over the protocol's limit of " + Wire.MaxPayload
                    + " bytes (what a .NET span addresses, less the " + Wire.HeaderSize + "-byte header)", payload + Wire.HeaderSize, Capacity);
            long size = GrownSize(payload);
            if (_fd >= 0)
            {
                // the blocks the frame will fill are reserved first: a sparse file on a full file system
                // would raise SIGBUS at the first write into a page it cannot back, killing the app
                Reserve(Wire.HeaderSize + payload);
                Posix.SetFileLength(_fd, size, _path);        // the rest of the new capacity stays sparse until used
            }
            else _stream.SetLength(size);
            Map(size);
            *(ulong*)(Base + Wire.OffCapacity) = (ulong)size;
        }

        /// <summary>
        /// Writer side (64-bit Linux): makes sure the file's first <paramref name="end"/> bytes have disk blocks (posix_fallocate,
        /// which also extends a shorter file), in steps of <see cref="ReserveStep"/> within the capacity.
        /// </summary>
        /// <exception cref="PayloadTooLargeException">The file system is full (ENOSPC) or the file would be too large (EFBIG).</exception>
        void Reserve(long end)
        {
            long want = Math.Max(end, Math.Min(Capacity, (end + ReserveStep - 1) / ReserveStep * ReserveStep));
            ReserveRange(0, want);
            _reserved = want;
        }

        /// <summary>
        /// Writer side: gives bytes [<paramref name="offset"/>, <paramref name="offset"/> + <paramref name="length"/>) of the
        /// file disk blocks before anything writes there through the mapping (an in-place request array). No-op off 64-bit Linux.
        /// </summary>
        /// <exception cref="PayloadTooLargeException">The file system is full (ENOSPC) or the file would be too large (EFBIG).</exception>
        public void ReserveRange(long offset, long length)
        {
            if (_fd < 0 || length <= 0) return;
            if (offset == 0 && length <= _reserved) return;
            long before = FileLength();
            int err;
            while ((err = posix_fallocate(_fd, (IntPtr)offset, (IntPtr)length)) == Posix.EINTR) { }
            if (err == 0) return;
            if (err != Posix.ENOSPC && err != Posix.EFBIG) return;     // not supported here (EOPNOTSUPP, EINVAL ...): the file stays as it was
            // an emulated reservation may have grown the file part of the way: give it back its size
            try { if (FileLength() > before) Posix.SetFileLength(_fd, before, _path); }
            catch (IOException) { }
            string dir = System.IO.Path.GetDirectoryName(_path);
            throw new PayloadTooLargeException(err == Posix.ENOSPC
                ? "the file system of the work folder " + dir + " is full: it cannot hold " + (offset + length) + " bytes of " + _path
                    + " for this call (ENOSPC, nothing was sent and the connection stays usable). Free space there (df " + dir + "), "
                    + "send less, or use a work folder on a larger file system"
                : "the file system of the work folder " + dir + " refuses a file of " + (offset + length) + " bytes (" + _path
                    + ", EFBIG): use a work folder on another file system, or send less", offset + length, Capacity);
        }

        /// <summary>
        /// Reader side: throws unless the file really is at least <paramref name="end"/> bytes long. A mapped page past the end
        /// of a file (truncated by another process, or never written on a full disk) raises SIGBUS when read, which kills the
        /// process: a header that promises more than the file holds is an error instead.
        /// </summary>
        /// <exception cref="ProtocolException">The file is shorter than <paramref name="end"/>.</exception>
        public void CheckCovers(long end)
        {
            long length = FileLength();
            if (length < end)
                throw new ProtocolException(_path + " is " + length + " bytes but its header says its frame ends at byte " + end
                    + ": the file was truncated (by another process, or a full disk); the frame is not read");
        }

        /// <summary>Reader side: maps the file again when the header's capacity is larger than the current view.</summary>
        public void Refresh()
        {
            ulong cap = *(ulong*)(Base + Wire.OffCapacity);
            if (cap <= (ulong)Capacity) return;
            long length = FileLength();
            if (cap > (ulong)length || cap > (ulong)int.MaxValue + 1)
                throw new ProtocolException(_path + " says its capacity is " + cap + " but the file is " + length + " bytes");
            Map((long)cap);
        }

        /// <summary>
        /// Gives the file back and closes it. Never unmaps a range a view may still read (see the class summary): on the
        /// libc path every range becomes private zero memory at the same address, unmapped once no view references it;
        /// on the MemoryMappedFile path the views stay until then. Idempotent.
        /// </summary>
        public void Dispose()
        {
            if (_view != null)
            {
                _keeper.AddView(new Retired(_view, _file, _pointerHeld));
                _view = null;
                _file = null;
                _pointerHeld = false;
            }
            _keeper.Retire();
            if (_fd >= 0)
            {
                Posix.Close(_fd);
                _fd = -1;
            }
            if (_stream != null) _stream.Dispose();
            _stream = null;
            Base = null;
            Capacity = 0;
        }

        const int PROT_READ = 1, PROT_WRITE = 2, MAP_PRIVATE = 2, MAP_FIXED = 0x10, MAP_ANONYMOUS = 0x20, MAP_NORESERVE = 0x4000;
        [DllImport("libc", SetLastError = true)] static extern IntPtr mmap(IntPtr addr, UIntPtr length, int prot, int flags, int fd, IntPtr offset);
        [DllImport("libc", SetLastError = true)] static extern int munmap(IntPtr addr, UIntPtr length);

        /// <summary>
        /// The ranges a <see cref="Mapping"/> mapped (libc path) or its views (MemoryMappedFile path). Referenced by the
        /// mapping and by every view over it; <see cref="Retire"/> (the mapping's Dispose) turns the ranges into zero
        /// pages, the finalizer (no view left) unmaps them.
        /// </summary>
        sealed class RangeKeeper
        {
            readonly List<KeyValuePair<IntPtr, long>> _ranges = new List<KeyValuePair<IntPtr, long>>();
            readonly List<IDisposable> _views = new List<IDisposable>();
            bool _retired;
            public volatile bool Viewed;

            public void AddRange(byte* at, long length)
            {
                lock (_ranges) _ranges.Add(new KeyValuePair<IntPtr, long>((IntPtr)at, length));
            }

            public void AddView(IDisposable view)
            {
                lock (_ranges) _views.Add(view);
            }

            /// <summary>
            /// Replaces every range with private anonymous memory at the same address (one mmap each, atomic for a
            /// concurrent reader: it sees the file's page or a zero page, never a hole), which drops the file's pages.
            /// A range that cannot be replaced stays mapped to the file (no crash; freed by the finalizer).
            /// </summary>
            public void Retire()
            {
                lock (_ranges)
                {
                    if (_retired) return;
                    _retired = true;
                    if (!Viewed)
                    {
                        // no view was ever made over this mapping: nothing else can read it, unmap it now
                        foreach (KeyValuePair<IntPtr, long> r in _ranges) munmap(r.Key, (UIntPtr)(ulong)r.Value);
                        _ranges.Clear();
                        foreach (IDisposable v in _views) v.Dispose();
                        _views.Clear();
                        GC.SuppressFinalize(this);
                        return;
                    }
                    foreach (KeyValuePair<IntPtr, long> r in _ranges)
                        mmap(r.Key, (UIntPtr)(ulong)r.Value, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED | MAP_ANONYMOUS | MAP_NORESERVE,
                            -1, IntPtr.Zero);
                }
            }

            /// <summary>No view references these ranges any more (nor the mapping): unmap them for good.</summary>
            ~RangeKeeper()
            {
                foreach (KeyValuePair<IntPtr, long> r in _ranges) munmap(r.Key, (UIntPtr)(ulong)r.Value);
                _ranges.Clear();
                foreach (IDisposable v in _views)
                {
                    try { v.Dispose(); }
                    catch (Exception) { }
                }
                _views.Clear();
            }
        }

        sealed class Retired : IDisposable
        {
            readonly MemoryMappedViewAccessor _view;
            readonly MemoryMappedFile _file;
            readonly bool _pointerHeld;

            public Retired(MemoryMappedViewAccessor view, MemoryMappedFile file, bool pointerHeld)
            {
                _view = view;
                _file = file;
                _pointerHeld = pointerHeld;
            }

            public void Dispose()
            {
                if (_pointerHeld) _view.SafeMemoryMappedViewHandle.ReleasePointer();
                _view.Dispose();
                _file.Dispose();
            }
        }
    }
}
