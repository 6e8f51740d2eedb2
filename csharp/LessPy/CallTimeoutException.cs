namespace LessPy
{
    /// <summary>
    /// A call was not answered within <see cref="ILessPyConnection.CallTimeout"/>. The server was told to drop the call
    /// (or interrupt it if it is running); its lane is set aside until the late reply comes, which is dropped, and the
    /// next call goes out at once on another lane.
    /// </summary>
    public sealed class CallTimeoutException : LessPyException
    {
        internal CallTimeoutException(string message) : base(message) { }
    }
}
