namespace LessPy
{
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
}
