namespace LessPy
{
    /// <summary>The header's status field (section 2).</summary>
    internal enum FrameStatus : uint
    {
        Value = 0,
        Error = 1,
        /// <summary>Response: the stream has no more items (or was closed).</summary>
        End = 2,
    }
}
