using System;

namespace LessPy
{
    /// <summary>
    /// The connection behind a proxy returned by <see cref="LessPythonInvoke"/>: cast the proxy to this interface
    /// to set the call timeout or to see which server it talks to. Disposing it closes the connection.
    /// </summary>
    public interface ILessPyConnection : IDisposable
    {
        /// <summary>
        /// How long a call waits for its reply; default 100 seconds. <see cref="System.Threading.Timeout.InfiniteTimeSpan"/>
        /// waits forever. A call not answered in time throws <see cref="CallTimeoutException"/>.
        /// </summary>
        TimeSpan CallTimeout { get; set; }

        /// <summary>The process id of the Python server (from <c>python.pid</c>).</summary>
        int ServerPid { get; }

        /// <summary>The absolute path of the server's work folder.</summary>
        string WorkFolder { get; }
    }
}
