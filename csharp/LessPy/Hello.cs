namespace LessPy
{
    /// <summary>What the server said in its hello (PROTOCOL.md section 3).</summary>
    internal struct Hello
    {
        public ushort Version;
        public ServerMode Mode;
        public ulong Session;
    }
}
