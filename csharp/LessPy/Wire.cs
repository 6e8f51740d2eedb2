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

        /// <summary>An NDARRAY's data (and an in-place request array) starts at a multiple of this from the payload start.</summary>
        public const int NdArrayAlign = 64;

        // ---- handshake (section 3); every field is little-endian
        public const int HelloSize = 48;        // the server's hello
        public const int HelloOffMagic = 0;     // ASCII LSPY
        public const int HelloOffVersion = 4;   // u16
        public const int HelloOffMode = 6;      // u16, see ServerMode
        public const int HelloOffSession = 8;   // u64, the server run's session id; the fields before it are read first
        public const int HelloOffNonce = 16;    // NonceSize bytes, what the answer's HMAC covers
        public const int NonceSize = 32;
        public const int AnswerSize = 52;       // the client's answer
        public const int AnswerOffMagic = 0;    // ASCII LSPY
        public const int AnswerOffVersion = 4;  // u16
        public const int AnswerOffPurpose = 6;  // u16, see Purpose
        public const int AnswerOffPid = 8;      // u32, the client's process id
        public const int AnswerOffClientId = 12; // u64
        public const int AnswerOffMac = 20;     // MacSize bytes, HMAC-SHA256 of the nonce with the session key
        public const int MacSize = 32;
        public const int ResultSize = 3;        // the server's result, then ResultOffMessageLength's count of UTF-8 bytes
        public const int ResultOffResult = 0;   // u8, see HandshakeResult
        public const int ResultOffMessageLength = 1; // u16
        public const int LaneIdSize = 4;        // an accepted lane's message: u32 lane id

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
