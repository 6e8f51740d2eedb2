namespace LessPy
{
    /// <summary>The Python result cannot be converted to the method's declared return type (error kind RESULT_MISMATCH).</summary>
    public sealed class ResultMismatchException : LessPyException
    {
        internal ResultMismatchException(string message) : base(message) { }
    }
}
