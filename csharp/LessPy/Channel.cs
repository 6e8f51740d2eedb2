using System;
using System.Buffers.Binary;
using System.Diagnostics;
using System.IO;
using System.IO.MemoryMappedFiles;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading;

namespace LessPy
{
    /// <summary>One mapped file (req.mmf or resp.mmf), its header checked, held by a raw pointer.</summary>
    internal sealed unsafe class Mapping : IDisposable
    {
        public const int HeaderSize = 64;
        MemoryMappedFile _file;
        MemoryMappedViewAccessor _view;
        byte* _acquired;

        public byte* Base { get; private set; }
        public long Capacity { get; private set; }

        /// <summary>Bytes available for a payload (a Span can address at most int.MaxValue).</summary>
        public int PayloadCapacity { get { return (int)Math.Min(Capacity - HeaderSize, int.MaxValue); } }

        public static Mapping Open(string path)
        {
            var m = new Mapping();
            try
            {
                var fs = new FileStream(path, FileMode.Open, FileAccess.ReadWrite, FileShare.ReadWrite | FileShare.Delete);
                long length = fs.Length;
                if (length < HeaderSize)
                {
                    fs.Dispose();
                    throw new ProtocolException(path + " is " + length + " bytes, shorter than its 64-byte header");
                }
                m._file = MemoryMappedFile.CreateFromFile(fs, null, 0, MemoryMappedFileAccess.ReadWrite, HandleInheritability.None, false);
                m._view = m._file.CreateViewAccessor(0, 0, MemoryMappedFileAccess.ReadWrite);
                byte* p = null;
                m._view.SafeMemoryMappedViewHandle.AcquirePointer(ref p);
                m._acquired = p;
                m.Base = p + m._view.PointerOffset;
                m.Capacity = length;
                m.CheckHeader(path);
                return m;
            }
            catch
            {
                m.Dispose();
                throw;
            }
        }

        void CheckHeader(string path)
        {
            var h = new ReadOnlySpan<byte>(Base, HeaderSize);
            if (h[0] != 'L' || h[1] != 'P' || h[2] != 'Y' || h[3] != 'M')
                throw new ProtocolException(path + " does not start with the magic LPYM");
            int version = BinaryPrimitives.ReadUInt16LittleEndian(h.Slice(4));
            if (version != 1) throw new ProtocolException(path + " has protocol version " + version + "; this client speaks version 1");
            int headerSize = BinaryPrimitives.ReadUInt16LittleEndian(h.Slice(6));
            if (headerSize != HeaderSize) throw new ProtocolException(path + " has header size " + headerSize + ", not 64");
            ulong cap = BinaryPrimitives.ReadUInt64LittleEndian(h.Slice(8));
            if (cap != (ulong)Capacity) throw new ProtocolException(path + " says its capacity is " + cap + " but the file is " + Capacity + " bytes");
        }

        public void Dispose()
        {
            if (_acquired != null)
            {
                _view.SafeMemoryMappedViewHandle.ReleasePointer();
                _acquired = null;
                Base = null;
            }
            if (_view != null) _view.Dispose();
            if (_file != null) _file.Dispose();
            _view = null;
            _file = null;
        }
    }

    /// <summary>
    /// A connection to one server: the two mappings, the notify socket and its handshake, and the call round trip
    /// (PROTOCOL.md sections 2, 3, 6 and 7). One call at a time; thread-safe.
    /// </summary>
    internal sealed unsafe class Channel : IDisposable
    {
        const byte Call = 0x01, Shutdown = 0x02, Reply = 0x01;
        static readonly TimeSpan HandshakeTimeout = TimeSpan.FromSeconds(10);

        readonly WorkFolder _folder;
        readonly object _lock = new object();
        readonly ViewGeneration _generation = new ViewGeneration();
        readonly byte[] _one = new byte[1];
        Mapping _req, _resp;
        Socket _socket;
        int _pid = -1, _port = -1;
        ulong _sequence;
        ulong _outstanding;            // sequence of a timed-out call whose reply has not come yet, 0 if none
        string _outstandingName;
        TimeSpan _timeout = TimeSpan.FromSeconds(100);
        volatile bool _disposed;

        Channel(WorkFolder folder) { _folder = folder; }

        /// <summary>Maps the folder's files, connects and shakes hands; throws when the folder is not served.</summary>
        public static Channel Open(WorkFolder folder)
        {
            var c = new Channel(folder);
            try
            {
                c.Reconnect();
                return c;
            }
            catch
            {
                c.Dispose(false);
                throw;
            }
        }

        public string Folder { get { return _folder.Path; } }
        public int ServerPid { get { return _pid; } }
        /// <summary>The server's mode from the handshake: 0 headless, 1 notebook main thread, 2 notebook threaded.</summary>
        public int Mode { get; private set; }

        public TimeSpan CallTimeout
        {
            get { return _timeout; }
            set
            {
                if (value != Timeout.InfiniteTimeSpan && (value <= TimeSpan.Zero || value.TotalMilliseconds > int.MaxValue))
                    throw new ArgumentOutOfRangeException(nameof(value), "a positive TimeSpan of at most int.MaxValue ms, or Timeout.InfiniteTimeSpan");
                _timeout = value;
            }
        }

        string LogHint { get { return "see " + _folder.File(WorkFolder.LogFile) + " if the server is headless"; } }

        // ---------------------------------------------------------------- connecting

        void Reconnect()
        {
            CloseSocket();
            int pid = _folder.ReadNumber(WorkFolder.PidFile);
            int port = _folder.ReadNumber(WorkFolder.PortFile);
            if (port <= 0 || port > 65535) throw new ServerUnavailableException(_folder.NotServedMessage());
            if (_req == null || pid != _pid || port != _port)
            {
                _generation.Bump();            // views over the old mapping die before it is unmapped
                DisposeMappings();
                try
                {
                    _req = Mapping.Open(_folder.File(WorkFolder.ReqFile));
                    _resp = Mapping.Open(_folder.File(WorkFolder.RespFile));
                }
                catch (IOException e)
                {
                    DisposeMappings();
                    throw new ServerUnavailableException("cannot map the files of " + _folder.Path + ": " + e.Message, e);
                }
                _pid = pid;
                _port = port;
            }
            byte[] key;
            try { key = _folder.ReadKey(); }
            catch (IOException e) { throw new ServerUnavailableException("cannot read " + _folder.File(WorkFolder.KeyFile) + ": " + e.Message, e); }

            var s = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            s.NoDelay = true;
            try
            {
                s.Connect(new IPEndPoint(IPAddress.Loopback, port));
            }
            catch (SocketException e)
            {
                s.Dispose();
                throw new ServerUnavailableException("no lesspy server answers on 127.0.0.1:" + port + " (from " + _folder.File(WorkFolder.PortFile)
                    + "): " + e.Message + ". The server has stopped; start it again (%lesspy serve in the notebook)", e);
            }
            try
            {
                Handshake(s, key);
            }
            catch
            {
                s.Dispose();
                throw;
            }
            _socket = s;
            _sequence = 0;
            _outstanding = 0;
        }

        void Handshake(Socket s, byte[] key)
        {
            var hello = new byte[40];
            ReadExact(s, hello, 40, "the server's hello");
            if (hello[0] != 'L' || hello[1] != 'S' || hello[2] != 'P' || hello[3] != 'Y')
                throw new ProtocolException("127.0.0.1:" + _port + " is not a lesspy server (its hello does not start with LSPY)");
            int version = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hello, 4, 2));
            if (version != 1) throw new HandshakeException("the server speaks protocol version " + version + "; this client speaks version 1", 2);
            Mode = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(hello, 6, 2));
            byte[] mac;
            using (var h = new HMACSHA256(key)) mac = h.ComputeHash(hello, 8, 32);

            var answer = new byte[44];
            answer[0] = (byte)'L'; answer[1] = (byte)'S'; answer[2] = (byte)'P'; answer[3] = (byte)'Y';
            BinaryPrimitives.WriteUInt16LittleEndian(new Span<byte>(answer, 4, 2), 1);
            BinaryPrimitives.WriteUInt32LittleEndian(new Span<byte>(answer, 8, 4), (uint)Process.GetCurrentProcess().Id);
            Buffer.BlockCopy(mac, 0, answer, 12, 32);
            try { s.Send(answer); }
            catch (SocketException e) { throw new ServerUnavailableException("the server closed the connection during the handshake: " + e.Message, e); }

            var head = new byte[3];
            ReadExact(s, head, 3, "the handshake result");
            int len = BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>(head, 1, 2));
            var msg = new byte[len];
            if (len > 0) ReadExact(s, msg, len, "the handshake message");
            string text = Encoding.UTF8.GetString(msg);
            switch (head[0])
            {
                case 0: return;
                case 1: throw new HandshakeException("the server refused the session key of " + _folder.File(WorkFolder.KeyFile) + (text.Length > 0 ? ": " + text : ""), 1);
                case 2: throw new HandshakeException("the server does not support this client's protocol version" + (text.Length > 0 ? ": " + text : ""), 2);
                case 3: throw new HandshakeException("the server is busy with another client" + (text.Length > 0 ? ": " + text : ""), 3);
                default: throw new HandshakeException("the server refused the connection (result " + head[0] + ")" + (text.Length > 0 ? ": " + text : ""), head[0]);
            }
        }

        static void ReadExact(Socket s, byte[] buf, int n, string what)
        {
            var sw = Stopwatch.StartNew();
            int got = 0;
            while (got < n)
            {
                int left = (int)(HandshakeTimeout.TotalMilliseconds - sw.ElapsedMilliseconds);
                if (left <= 0 || !s.Poll(left * 1000, SelectMode.SelectRead))
                    throw new ServerUnavailableException("the server did not send " + what + " within " + HandshakeTimeout.TotalSeconds + " s");
                SocketError err;
                int r = s.Receive(buf, got, n - got, SocketFlags.None, out err);
                if (r <= 0) throw new ServerUnavailableException("the server closed the connection before sending " + what + (err != SocketError.Success ? " (" + err + ")" : ""));
                got += r;
            }
        }

        /// <summary>False when the peer has closed the socket (readable with nothing to read).</summary>
        bool SocketLooksOpen()
        {
            if (_socket == null) return false;
            try
            {
                if (!_socket.Poll(0, SelectMode.SelectRead)) return true;
                return _socket.Available > 0;
            }
            catch (SocketException) { return false; }
            catch (ObjectDisposedException) { return false; }
        }

        void CloseSocket()
        {
            if (_socket == null) return;
            try { _socket.Dispose(); } catch (SocketException) { }
            _socket = null;
            _outstanding = 0;
        }

        /// <summary>Waits for one byte: the byte, -1 on timeout, -2 when the connection closed.</summary>
        int WaitByte(TimeSpan timeout)
        {
            var sw = Stopwatch.StartNew();
            while (true)
            {
                int us;
                if (timeout == Timeout.InfiniteTimeSpan) us = -1;
                else
                {
                    double left = (timeout - sw.Elapsed).TotalMilliseconds * 1000;
                    if (left < 0) left = 0;
                    us = left > int.MaxValue ? int.MaxValue : (int)left;
                }
                bool ready;
                try { ready = _socket.Poll(us, SelectMode.SelectRead); }
                catch (SocketException) { return -2; }
                catch (ObjectDisposedException) { return -2; }
                if (ready)
                {
                    SocketError err;
                    int r;
                    try { r = _socket.Receive(_one, 0, 1, SocketFlags.None, out err); }
                    catch (ObjectDisposedException) { return -2; }
                    return r == 1 ? _one[0] : -2;
                }
                if (us >= 0 && sw.Elapsed >= timeout) return -1;
            }
        }

        string TimeoutText(TimeSpan t)
        {
            return t.TotalSeconds >= 1 ? t.TotalSeconds.ToString("0.###") + " s" : t.TotalMilliseconds.ToString("0.###") + " ms";
        }

        string BusyHint()
        {
            return Mode == 1
                ? ". The notebook is busy running a cell: calls run between cells. Wait for it, raise CallTimeout, or serve with %lesspy serve --threaded"
                : "";
        }

        // ---------------------------------------------------------------- calling

        /// <summary>One call: encode, notify, wait, decode. Returns the result (NdArray results are views over resp.mmf).</summary>
        public object Invoke(MethodBinding m, object[] args)
        {
            lock (_lock)
            {
                if (_disposed) throw new ObjectDisposedException("LessPy connection to " + _folder.Path);
                for (int attempt = 0; ; attempt++)
                {
                    if (!SocketLooksOpen()) Reconnect();
                    if (_outstanding != 0 && !DrainOutstanding(m))
                    {
                        if (attempt > 0) throw new ServerUnavailableException("the connection to " + _folder.Path + " keeps closing; " + LogHint);
                        continue;                          // the connection closed while we waited: reconnect
                    }

                    long size = Mapping.HeaderSize + Codec.MeasureCall(m.NameUtf8, m.Descriptor, args, m.ArgTypes);
                    if (size - Mapping.HeaderSize > _req.PayloadCapacity)
                        throw new PayloadTooLargeException("the call to " + m.PyName + " needs " + size + " bytes but " + WorkFolder.ReqFile
                            + " holds " + _req.Capacity + ": start the server with a larger capacity", size, _req.Capacity);

                    byte* h = _req.Base;
                    int len = Codec.WriteCall(new Span<byte>(h + Mapping.HeaderSize, _req.PayloadCapacity), m.NameUtf8, m.Descriptor, args, m.ArgTypes);
                    ulong seq = ++_sequence;
                    *(ulong*)(h + 24) = (ulong)len;
                    *(uint*)(h + 32) = 0;
                    Thread.MemoryBarrier();
                    Volatile.Write(ref *(long*)(h + 16), (long)seq);

                    _one[0] = Call;
                    int sent;
                    SocketError err;
                    try { sent = _socket.Send(_one, 0, 1, SocketFlags.None, out err); }
                    catch (ObjectDisposedException) { sent = 0; }
                    if (sent != 1)
                    {
                        CloseSocket();
                        if (attempt == 0) continue;        // dropped before the call went out: reconnect once and retry
                        throw new ServerUnavailableException("cannot send the call to " + m.PyName + ": the connection to " + _folder.Path + " closed; " + LogHint);
                    }
                    _generation.Bump();                    // the previous result's views die now: resp.mmf is about to change
                    return AwaitReply(m, seq);
                }
            }
        }

        /// <summary>Waits for the reply to a timed-out call. False when the connection closed instead.</summary>
        bool DrainOutstanding(MethodBinding m)
        {
            while (true)
            {
                int b = WaitByte(_timeout);
                if (b == -1)
                    throw new CallTimeoutException("the previous call to " + _outstandingName + " is still running in Python (no reply within another "
                        + TimeoutText(_timeout) + "), so " + m.PyName + " was not sent" + BusyHint());
                if (b == -2)
                {
                    CloseSocket();
                    return false;
                }
                Thread.MemoryBarrier();
                ulong rseq = (ulong)Volatile.Read(ref *(long*)(_resp.Base + 16));
                if (rseq >= _outstanding)
                {
                    _outstanding = 0;
                    return true;
                }
            }
        }

        object AwaitReply(MethodBinding m, ulong seq)
        {
            var sw = Stopwatch.StartNew();
            while (true)
            {
                TimeSpan left = _timeout == Timeout.InfiniteTimeSpan ? _timeout : _timeout - sw.Elapsed;
                if (left != Timeout.InfiniteTimeSpan && left < TimeSpan.Zero) left = TimeSpan.Zero;
                int b = WaitByte(left);
                if (b == -1)
                {
                    _outstanding = seq;
                    _outstandingName = m.PyName;
                    throw new CallTimeoutException("the call to " + m.PyName + " did not return within " + TimeoutText(_timeout)
                        + " (ILessPyConnection.CallTimeout); it may still be running in Python" + BusyHint());
                }
                if (b == -2)
                {
                    CloseSocket();
                    throw new ServerUnavailableException("the server closed the connection during the call to " + m.PyName
                        + "; it may have crashed: " + LogHint);
                }
                if (b != Reply)
                {
                    CloseSocket();
                    throw new ProtocolException("the server sent byte 0x" + b.ToString("x2") + " on the notify socket, not REPLY (0x01)");
                }
                Thread.MemoryBarrier();
                byte* h = _resp.Base;
                ulong rseq = (ulong)Volatile.Read(ref *(long*)(h + 16));
                if (rseq < seq) continue;                 // a late reply to an abandoned call
                if (rseq != seq)
                {
                    CloseSocket();
                    throw new ProtocolException("the reply carries sequence " + rseq + " but the call was " + seq);
                }
                ulong len = *(ulong*)(h + 24);
                uint status = *(uint*)(h + 32);
                if (len > (ulong)_resp.PayloadCapacity)
                    throw new ProtocolException("the reply says its payload is " + len + " bytes but " + WorkFolder.RespFile + " holds " + _resp.PayloadCapacity);
                if (status == 1)
                    throw ToException(Codec.ReadError(new ReadOnlySpan<byte>(h + Mapping.HeaderSize, (int)len)), m);
                if (status != 0) throw new ProtocolException("the reply has status " + status + " (0 value, 1 error)");

                ReadOnlyMemory<byte> memory = m.ReturnsArrays
                    ? new MappedMemoryManager(h + Mapping.HeaderSize, (int)len, _generation).Memory
                    : ReadOnlyMemory<byte>.Empty;         // nothing will keep a view: no need to allocate one
                var span = new ReadOnlySpan<byte>(h + Mapping.HeaderSize, (int)len);
                int pos = 0;
                WireType actual;
                object result = Codec.Read(memory, span, ref pos, m.ReturnType, out actual);
                if (pos != (int)len) throw new ProtocolException("the reply to " + m.PyName + " has " + ((int)len - pos) + " bytes after its value");
                return result;
            }
        }

        Exception ToException(ErrorFrame e, MethodBinding m)
        {
            string msg = e.Message.Length > 0 ? e.Message : "the call to " + m.PyName + " failed";
            switch (e.Kind)
            {
                case 1: return new PythonException(e.PythonType, e.Message, e.Traceback);
                case 2: return new FunctionNotFoundException(m.PyName, msg);
                case 3: return new ArgumentMismatchException(msg);
                case 4: return new ResultMismatchException(msg);
                case 5: return new PayloadTooLargeException(msg, -1, _resp.Capacity);
                case 6: return new ProtocolException(msg);
                case 7: return new LessPyException(msg);
                default: return new LessPyException("error kind " + e.Kind + " from the server: " + msg);
            }
        }

        // ---------------------------------------------------------------- closing

        /// <summary>Closes the connection; with <paramref name="shutdown"/> first asks the server to stop (SHUTDOWN).</summary>
        public void Dispose(bool shutdown)
        {
            if (_disposed) return;
            _disposed = true;
            bool locked = Monitor.TryEnter(_lock, TimeSpan.FromSeconds(2));
            try
            {
                Socket s = _socket;
                if (s != null)
                {
                    if (shutdown)
                    {
                        try { _one[0] = Shutdown; SocketError err; s.Send(_one, 0, 1, SocketFlags.None, out err); }
                        catch (ObjectDisposedException) { }
                    }
                    try { s.Shutdown(SocketShutdown.Both); } catch (SocketException) { } catch (ObjectDisposedException) { }
                    s.Dispose();
                }
                _socket = null;
                if (locked)
                {
                    _generation.Bump();
                    DisposeMappings();
                }
            }
            finally
            {
                if (locked) Monitor.Exit(_lock);
            }
        }

        public void Dispose() { Dispose(false); }

        void DisposeMappings()
        {
            if (_req != null) _req.Dispose();
            if (_resp != null) _resp.Dispose();
            _req = null;
            _resp = null;
        }
    }
}
