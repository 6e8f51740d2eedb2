namespace LessPy
{
    /// <summary>The server has no exported callable of that name (error kind FUNCTION_NOT_FOUND).</summary>
    public sealed class FunctionNotFoundException : LessPyException
    {
        internal FunctionNotFoundException(string functionName, string message) : base(message)
        {
            FunctionName = functionName;
        }

        /// <summary>The Python function name that was looked up.</summary>
        public string FunctionName { get; }
    }
}
