namespace LessPy
{
    /// <summary>
    /// The call was interrupted on the server (error kind INTERRUPTED): in a notebook, Jupyter's interrupt (the stop
    /// button or <c>interrupt_kernel</c>) stopped it; or the server is stopping. The connection stays usable.
    /// </summary>
    public sealed class CallInterruptedException : LessPyException
    {
        internal CallInterruptedException(string message) : base(message) { }
    }
}
