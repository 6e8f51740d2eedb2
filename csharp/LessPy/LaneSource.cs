using System;
using System.IO;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// Where a channel's lanes come from: a work folder on this machine (mapped lanes, <see cref="LocalLaneSource"/>) or
    /// a session behind Jupyter Server's lesspy relay (websocket lanes, <see cref="RemoteLaneSource"/>). The channel's
    /// pool and call round trip are the same for both.
    /// </summary>
    internal abstract class LaneSource
    {
        /// <summary>What messages name: the folder's path, or the session's URL (no token).</summary>
        public abstract string Where { get; }

        /// <summary>The remote endpoint, or null for a folder on this machine.</summary>
        public virtual RemoteEndpoint Remote { get { return null; } }

        /// <summary>
        /// Opens a lane, waiting until <paramref name="deadline"/> and while <paramref name="ct"/> is not cancelled;
        /// <paramref name="pid"/> is the server's process id.
        /// </summary>
        /// <exception cref="ServerUnavailableException">Nothing serves there.</exception>
        /// <exception cref="HandshakeException">The server refused the lane.</exception>
        /// <exception cref="NotAnsweringException">The deadline passed first.</exception>
        /// <exception cref="SessionChangedException">The server restarted during the open (try once more).</exception>
        public abstract IFrameTransport Open(ulong clientId, out Hello hello, out int pid, long deadline, CancellationToken ct);

        /// <summary>
        /// After a lane reached a new server run: throws unless it serves the module the proxy bound
        /// (<paramref name="bound"/>: a module path, "" for none, null when nothing was recorded).
        /// </summary>
        public abstract void CheckStillServes(string bound);
    }

    /// <summary>A work folder on this machine: mapped lanes through its notify socket, after its key's handshake.</summary>
    internal sealed class LocalLaneSource : LaneSource
    {
        public readonly WorkFolder Folder;

        public LocalLaneSource(WorkFolder folder) { Folder = folder; }

        public override string Where { get { return Folder.Path; } }

        public override IFrameTransport Open(ulong clientId, out Hello hello, out int pid, long deadline, CancellationToken ct)
        {
            byte[] key;
            try { key = Folder.ReadKey(); }
            catch (IOException e) { throw new ServerUnavailableException("cannot read " + Folder.File(WorkFolder.KeyFile) + ": " + e.Message, e); }
            catch (UnauthorizedAccessException e) { throw new ServerUnavailableException("cannot read " + Folder.File(WorkFolder.KeyFile) + ": " + e.Message, e); }
            Lane lane = Lane.Open(Folder, key, clientId, out hello, deadline, ct);
            try { pid = Folder.ReadNumber(WorkFolder.PidFile); }
            catch
            {
                lane.Close();
                throw;
            }
            return lane;
        }

        public override void CheckStillServes(string bound) { Folder.CheckStillServes(bound); }
    }

    /// <summary>A session behind Jupyter Server's lesspy relay: one websocket per lane (<see cref="RemoteLane"/>).</summary>
    internal sealed class RemoteLaneSource : LaneSource
    {
        readonly RemoteEndpoint _at;

        public RemoteLaneSource(RemoteEndpoint at) { _at = at; }

        public override string Where { get { return _at.Display; } }

        public override RemoteEndpoint Remote { get { return _at; } }

        public override IFrameTransport Open(ulong clientId, out Hello hello, out int pid, long deadline, CancellationToken ct)
        {
            return RemoteLane.Open(_at, clientId, out hello, out pid, deadline, ct);
        }

        /// <summary>
        /// The session's module from the relay's status (GET of the session's URL); a session of the same name that serves
        /// another module is refused, as a local folder's is.
        /// </summary>
        public override void CheckStillServes(string bound)
        {
            if (bound == null) return;
            string now = RemoteLane.ServedModule(_at);
            if (now == bound) return;
            throw new ServerUnavailableException("the lesspy session '" + _at.Session + "' at " + _at.Display + " changed under this connection: it was bound to "
                + (bound.Length == 0 ? "a session that names no module (a notebook's %lesspy serve)" : "the module " + bound)
                + ", and the session now answering there " + (now.Length == 0 ? "names no module" : "serves " + now)
                + ". LessPy will not call another module's code through this interface, so this call was not sent: connect again");
        }
    }
}
