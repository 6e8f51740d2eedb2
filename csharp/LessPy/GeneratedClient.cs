using System;

namespace LessPy
{
    /// <summary>
    /// The base class of the clients <c>lesspy stub MODULE.py --client</c> generates: a sealed class deriving from it
    /// implements the interface by calling <see cref="Calls"/>, and is what <see cref="LessPythonInvoke"/> returns for an
    /// interface carrying <see cref="LessPyClientAttribute"/>. It implements <see cref="ILessPyConnection"/> (and so
    /// <see cref="IDisposable"/>) as a proxy does.
    /// </summary>
    public abstract class GeneratedClient : ILessPyConnection
    {
        /// <summary>Takes the connection the generated class calls through.</summary>
        protected GeneratedClient(PythonCalls calls)
        {
            if (calls == null) throw new ArgumentNullException(nameof(calls));
            Calls = calls;
        }

        /// <summary>The connection: the generated methods call Python through it.</summary>
        protected PythonCalls Calls { get; }

        /// <inheritdoc />
        public TimeSpan CallTimeout
        {
            get { return Calls.CallTimeout; }
            set { Calls.CallTimeout = value; }
        }

        /// <inheritdoc />
        public int ServerPid { get { return Calls.ServerPid; } }

        /// <inheritdoc />
        public string WorkFolder { get { return Calls.WorkFolder; } }

        /// <inheritdoc />
        public NdArray NewRequestArray<T>(params int[] shape) where T : struct { return Calls.NewRequestArray<T>(shape); }

        /// <summary>Closes the connection (<see cref="PythonCalls.Dispose"/>).</summary>
        public void Dispose() { Calls.Dispose(); }
    }
}
