namespace LessPy
{
    /// <summary>The Python function cannot take the arguments sent: wrong count or an unsuitable value (error kind BAD_ARGUMENTS).</summary>
    public sealed class ArgumentMismatchException : LessPyException
    {
        internal ArgumentMismatchException(string message) : base(message) { }
    }
}
