using System;
using System.Diagnostics;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Threading;

namespace LessPy
{
    /// <summary>Short connections to a folder's server that are not lanes: a liveness probe, and a stop request.</summary>
    internal static class Probe
    {
        /// <summary>
        /// True when something accepts a connection on the folder's notify socket (connect, then close), or listens there
        /// with a full queue (a stopped or busy server: its socket is alive though the connect does not go through within
        /// <see cref="AcceptsTicks"/>).
        /// </summary>
        public static bool Accepts(WorkFolder folder)
        {
            try
            {
                EndPoint at = Handshake.NotifyEndPoint(folder);
                using (NotifySocket s = NotifySocket.Connect(at, Stopwatch.GetTimestamp() + AcceptsTicks, CancellationToken.None)) return true;
            }
            catch (UntrustedWorkFolderException) { throw; }
            catch (NotAnsweringException) { return true; }
            catch (LessPyException) { return false; }
            catch (SocketException) { return false; }
            catch (ArgumentException) { return false; }
        }

        /// <summary>How long <see cref="Accepts"/> tries to connect (a full queue says EAGAIN at once; TCP may take a while).</summary>
        static readonly long AcceptsTicks = Stopwatch.Frequency;

        /// <summary>
        /// Asks the folder's server to stop (handshake purpose 2). False when it could not be asked. A server that other
        /// clients use refuses (handshake result 4, "in use") and keeps serving: then <paramref name="inUse"/> holds its
        /// message (how many other clients, their pids, the module served) and the result is false.
        /// </summary>
        /// <exception cref="UntrustedWorkFolderException">The folder or its key is not this user's own, or another user's process answers.</exception>
        public static bool Stop(WorkFolder folder, out string inUse)
        {
            inUse = null;
            try
            {
                byte[] key = folder.ReadKey();
                EndPoint at = Handshake.NotifyEndPoint(folder);
                long deadline = Handshake.DefaultDeadline();
                using (NotifySocket s = NotifySocket.Connect(at, deadline, CancellationToken.None))
                {
                    Handshake.Exchange(s, at, key, Purpose.Stop, 0, deadline, CancellationToken.None);
                    Handshake.ReadResult(s, at, folder, deadline, CancellationToken.None);
                    return true;
                }
            }
            catch (UntrustedWorkFolderException) { throw; }
            catch (HandshakeException e)
            {
                if (e.Result != (int)HandshakeResult.InUse) return false;
                inUse = e.ServerText.Length > 0 ? e.ServerText : e.Message;     // the server's own text (who uses it)
                return false;
            }
            catch (LessPyException) { return false; }
            catch (SocketException) { return false; }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        }
    }
}
