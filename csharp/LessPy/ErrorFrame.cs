namespace LessPy
{
    /// <summary>A decoded error reply (PROTOCOL.md section 7).</summary>
    internal struct ErrorFrame
    {
        public byte Kind;
        public string PythonType;
        public string Message;
        public string Traceback;
    }
}
