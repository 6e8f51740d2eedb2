namespace LessPy
{
    /// <summary>
    /// LessPy refused a work folder, one of its files, or the process answering on its socket, because it is not this
    /// user's own and private (docs/PROTOCOL.md section 1): it belongs to another user, is a symbolic link, or group or
    /// others may use it. Nothing was sent to it. The message names the path, the owner or mode found, and what to do.
    /// </summary>
    public sealed class UntrustedWorkFolderException : LessPyException
    {
        internal UntrustedWorkFolderException(string path, string message) : base(message) { Path = path; }

        /// <summary>The folder or file refused.</summary>
        public string Path { get; }
    }
}
