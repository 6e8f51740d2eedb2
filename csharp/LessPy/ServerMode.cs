namespace LessPy
{
    /// <summary>How the server runs calls, from its hello (section 3).</summary>
    internal enum ServerMode : ushort
    {
        /// <summary>A headless server: each lane has its own server thread.</summary>
        Headless = 0,
        /// <summary>A notebook: calls run on the kernel's main thread, between cells.</summary>
        Notebook = 1,
        /// <summary>A notebook served with --threaded: calls run on server threads.</summary>
        NotebookThreaded = 2,
    }
}
