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
}
