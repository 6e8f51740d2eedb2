namespace LessPy
{
    /// <summary>The wire protocol's numbers (docs/PROTOCOL.md sections 2, 3 and 7), named once.</summary>
    internal static class Wire
    {
        /// <summary>The protocol version this client speaks (hello, answer and mapping headers).</summary>
        public const ushort Version = 2;

        // ---- mapping header (section 2); every field is little-endian
        public const int HeaderSize = 64;
        public const int OffMagic = 0;          // ASCII LPYM
        public const int OffVersion = 4;        // u16
        public const int OffHeaderSize = 6;     // u16
        public const int OffCapacity = 8;       // u64, the file's size as last set by its writer
        public const int OffSequence = 16;      // u64, written last (release)
        public const int OffLength = 24;        // u64, payload bytes after the header
        public const int OffStatus = 32;        // u32, see FrameStatus
        public const int OffWaiting = 36;       // u32, written by the file's reader: 1 while it blocks on the socket
        public const int OffSession = 40;       // u64, the server run's session id
        public const int OffCancel = 48;        // u64, request file only: the sequence of an abandoned call
        public const int OffFlags = 56;         // u32, request file only: what this call's reply may use
        /// <summary>Request flag: the reply may be an NDARRAY_IN_REQUEST (a pointer into this request's payload).</summary>
        public const uint FlagReplyInRequest = 1;

        /// <summary>The largest payload: what a .NET span can address, minus the header.</summary>
        public const long MaxPayload = int.MaxValue - HeaderSize;

        // ---- handshake (section 3)
        public const int HelloSize = 48;        // LSPY, u16 version, u16 mode, u64 session id, 32-byte nonce
        public const int AnswerSize = 52;       // LSPY, u16 version, u16 purpose, u32 pid, u64 client id, 32-byte HMAC
        public const int NonceOffset = 16;
        public const int NonceSize = 32;

        // ---- single bytes on a lane's connection after the handshake
        public const byte NotifyCall = 0x01;      // client -> server
        public const byte NotifyShutdown = 0x02;  // client -> server
        public const byte NotifyReply = 0x01;     // server -> client

        // ---- work folder files (section 1)
        public const string LaneRequestSuffix = ".req.mmf";     // lane-N.req.mmf
        public const string LaneResponseSuffix = ".resp.mmf";   // lane-N.resp.mmf
        public const string SocketFile = "notify.sock";
        public const string LockFile = "lesspy.lock";
        public const string UnixPortText = "unix";

        /// <summary>Lane <paramref name="id"/>'s file: "lane-" + id + <paramref name="suffix"/>.</summary>
        public static string LaneFile(int id, string suffix)
        {
            return "lane-" + id.ToString(System.Globalization.CultureInfo.InvariantCulture) + suffix;
        }
    }

    /// <summary>The header's status field (section 2).</summary>
    internal enum FrameStatus : uint
    {
        Value = 0,
        Error = 1,
        /// <summary>Response: the stream has no more items (or was closed).</summary>
        End = 2,
    }

    /// <summary>What a request asks for (the request header's status, section 2 and "Streams").</summary>
    internal enum RequestStatus : uint
    {
        Call = 0,
        /// <summary>The next item of the lane's open stream (empty payload).</summary>
        Next = 1,
        /// <summary>Close the lane's open stream (empty payload).</summary>
        Close = 2,
        /// <summary>A call whose result is streamed item by item (IEnumerable&lt;T&gt;).</summary>
        Stream = 3,
    }

    /// <summary>The error kinds of an error reply (section 7).</summary>
    internal enum ErrorKind : byte
    {
        PythonError = 1,
        FunctionNotFound = 2,
        BadArguments = 3,
        ResultMismatch = 4,
        PayloadTooLarge = 5,
        MalformedRequest = 6,
        ServerError = 7,
        Cancelled = 8,
        Interrupted = 9,
    }

    /// <summary>The handshake's result byte (section 3).</summary>
    internal enum HandshakeResult : byte
    {
        Accepted = 0,
        WrongKey = 1,
        UnsupportedVersion = 2,
        Busy = 3,
    }

    /// <summary>How the server runs calls, from its hello (section 3).</summary>
    internal enum ServerMode : ushort
    {
        /// <summary>A headless server: each lane has its own server thread.</summary>
        Headless = 0,
        /// <summary>A notebook: calls run on the kernel's main thread, between cells.</summary>
        Notebook = 1,
        /// <summary>A notebook served with --threaded: calls run on server threads.</summary>
        NotebookThreaded = 2,
    }

    /// <summary>What a connection is for, sent in the client's answer (section 3).</summary>
    internal enum Purpose : ushort
    {
        OpenLane = 0,
        Status = 1,
        Stop = 2,
    }
}
