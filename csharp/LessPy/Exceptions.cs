using System;

namespace LessPy
{
    /// <summary>
    /// Base class of every error LessPy reports. Catch it to handle any failure of a call to Python.
    /// A server-side failure that fits no other category (error kind SERVER_ERROR) is reported as this type itself.
    /// </summary>
    public class LessPyException : Exception
    {
        internal LessPyException(string message) : base(message) { }
        internal LessPyException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>The Python function raised an exception (error kind PYTHON_ERROR).</summary>
    public sealed class PythonException : LessPyException
    {
        internal PythonException(string pythonType, string message, string traceback)
            : base(string.IsNullOrEmpty(pythonType) ? message : pythonType + ": " + message)
        {
            PythonType = pythonType ?? "";
            PythonTraceback = traceback ?? "";
        }

        /// <summary>The Python exception's type name, for example <c>ValueError</c>.</summary>
        public string PythonType { get; }

        /// <summary>The Python traceback as Python formats it ("" when the server sent none).</summary>
        public string PythonTraceback { get; }

        /// <summary>The .NET description of this exception followed by the Python traceback.</summary>
        public override string ToString()
        {
            if (PythonTraceback.Length == 0) return base.ToString();
            return base.ToString() + Environment.NewLine + "--- Python traceback ---" + Environment.NewLine + PythonTraceback;
        }
    }

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

    /// <summary>The Python function cannot take the arguments sent: wrong count or an unsuitable value (error kind BAD_ARGUMENTS).</summary>
    public sealed class ArgumentMismatchException : LessPyException
    {
        internal ArgumentMismatchException(string message) : base(message) { }
    }

    /// <summary>The Python result cannot be converted to the method's declared return type (error kind RESULT_MISMATCH).</summary>
    public sealed class ResultMismatchException : LessPyException
    {
        internal ResultMismatchException(string message) : base(message) { }
    }

    /// <summary>
    /// A request or a result does not fit its mapping. A too-large request is detected before anything is written,
    /// so the connection stays usable; raise the <c>capacity</c> given to <see cref="LessPythonInvoke.Initialize{T}"/>.
    /// </summary>
    public sealed class PayloadTooLargeException : LessPyException
    {
        internal PayloadTooLargeException(string message, long size, long capacity) : base(message)
        {
            Size = size;
            Capacity = capacity;
        }

        /// <summary>The size in bytes the frame needed (header included), or -1 when the server did not say.</summary>
        public long Size { get; }

        /// <summary>The mapping's capacity in bytes (header included).</summary>
        public long Capacity { get; }
    }

    /// <summary>The server cannot be reached, could not be started, died, or closed the connection during a call.</summary>
    public sealed class ServerUnavailableException : LessPyException
    {
        internal ServerUnavailableException(string message) : base(message) { }
        internal ServerUnavailableException(string message, Exception inner) : base(message, inner) { }
    }

    /// <summary>
    /// A call was not answered within <see cref="ILessPyConnection.CallTimeout"/>. The server was told to drop the call
    /// (or interrupt it if it is running); its lane is set aside until the late reply comes, which is dropped, and the
    /// next call goes out at once on another lane.
    /// </summary>
    public sealed class CallTimeoutException : LessPyException
    {
        internal CallTimeoutException(string message) : base(message) { }
    }

    /// <summary>
    /// The call was interrupted on the server (error kind INTERRUPTED): in a notebook, Jupyter's interrupt (the stop
    /// button or <c>interrupt_kernel</c>) stopped it; or the server is stopping. The connection stays usable.
    /// </summary>
    public sealed class CallInterruptedException : LessPyException
    {
        internal CallInterruptedException(string message) : base(message) { }
    }

    /// <summary>A lane file belongs to another server run than the connection's handshake (the server restarted).</summary>
    internal sealed class SessionChangedException : LessPyException
    {
        internal SessionChangedException(string message) : base(message) { }
    }

    /// <summary>The server refused the connection: wrong session key, unsupported version, or busy (its message names the limit).</summary>
    public sealed class HandshakeException : LessPyException
    {
        internal HandshakeException(string message, int result) : this(message, result, "") { }

        internal HandshakeException(string message, int result, string serverText) : base(message) { Result = result; ServerText = serverText; }

        /// <summary>The server's handshake result: 1 wrong key, 2 unsupported version, 3 busy, 4 in use (a stop refused).</summary>
        internal int Result { get; }

        /// <summary>The message the server sent with its result (UTF-8 text, "" when it sent none).</summary>
        internal string ServerText { get; }
    }

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

    /// <summary>A frame or a mapping header broke the wire protocol (docs/PROTOCOL.md), on either side.</summary>
    public sealed class ProtocolException : LessPyException
    {
        internal ProtocolException(string message) : base(message) { }
    }

    /// <summary>
    /// A call cannot start because every lane of the connection is held by an open stream (an <c>IEnumerable&lt;T&gt;</c>
    /// method's enumerator neither run to the end nor disposed), so waiting would not help: dispose the enumerators.
    /// </summary>
    public sealed class LanesExhaustedException : LessPyException
    {
        internal LanesExhaustedException(string message, int lanes) : base(message) { Lanes = lanes; }

        /// <summary>How many lanes the connection has (all held).</summary>
        public int Lanes { get; }
    }
}
