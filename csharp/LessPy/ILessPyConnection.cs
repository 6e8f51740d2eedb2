using System;

namespace LessPy
{
    /// <summary>
    /// The connection behind a proxy returned by <see cref="LessPythonInvoke"/>: cast the proxy to this interface
    /// (or derive your interface from it) to set the call timeout, see which server it talks to, or fill request
    /// arrays in place. Disposing it closes the connection.
    /// <para>
    /// One proxy may be used from many threads at once: each concurrent call gets a lane of its own (a pair of
    /// mappings), up to 64 per proxy (the server's limit per client); a result's NdArray views stay valid and
    /// unchanged until the same thread's next call on this proxy. With more threads than lanes, a lane holding
    /// another thread's views is taken over and those views die: their checked reads (ToArray, Data, CopyTo) throw,
    /// never return another call's data (see <see cref="NdArray"/>).
    /// </para>
    /// </summary>
    public interface ILessPyConnection : IDisposable
    {
        /// <summary>
        /// How long a call waits for its reply (and for a free lane); default 100 seconds.
        /// <see cref="System.Threading.Timeout.InfiniteTimeSpan"/> waits forever. A call not answered in time throws
        /// <see cref="CallTimeoutException"/>; the server is told to drop it (or interrupt it if it is running) and the
        /// next call goes out at once on another lane.
        /// </summary>
        TimeSpan CallTimeout { get; set; }

        /// <summary>
        /// The process id of the Python server (from <c>python.pid</c>, read when the connection last changed server; for
        /// a session reached through Jupyter Server, the relay's hello says it: a process on that machine).
        /// </summary>
        int ServerPid { get; }

        /// <summary>The absolute path of the server's work folder; for a session reached through Jupyter Server, its URL (without the token).</summary>
        string WorkFolder { get; }

        /// <summary>
        /// Allocates an array inside this thread's lane request mapping, to be filled in place (with
        /// <see cref="NdArray.AsWritableSpan{T}"/>) and passed as an argument of this thread's next call on this
        /// proxy: the data is not copied again, Python sees it as a zero-copy view. The array is writable until that
        /// call sends it; after it, and after any other call of this thread, its data throws
        /// <see cref="InvalidOperationException"/>. Several arrays may be made for one call. The dtype follows
        /// <typeparamref name="T"/> as in <see cref="NdArray.FromArray{T}"/>. The lane holding them is never taken over
        /// by another thread while this thread is alive; write through the span only until this thread's next call
        /// starts (after it, the span may point into another call's request).
        /// </summary>
        /// <param name="shape">The shape; none means a 0-d array (one element).</param>
        /// <exception cref="NotSupportedException">A session reached through Jupyter Server (no shared memory).</exception>
        NdArray NewRequestArray<T>(params int[] shape) where T : struct;
    }
}
