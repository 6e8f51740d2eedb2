using System;
using System.IO;
using System.Net;
using System.Net.Sockets;

namespace LessPy
{
    /// <summary>Short connections to a folder's server that are not lanes: a liveness probe, and a stop request.</summary>
    internal static class Probe
    {
        /// <summary>True when something accepts a connection on the folder's notify socket (connect, then close).</summary>
        public static bool Accepts(WorkFolder folder)
        {
            try
            {
                EndPoint at = Lane.NotifyEndPoint(folder);
                using (NotifySocket s = Lane.Connect(at)) return true;
            }
            catch (UntrustedWorkFolderException) { throw; }
            catch (LessPyException) { return false; }
            catch (SocketException) { return false; }
            catch (ArgumentException) { return false; }
        }

        /// <summary>The handshake result of a stop refused because other clients use the server (PROTOCOL.md section 3).</summary>
        public const int InUse = 4;

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
                EndPoint at = Lane.NotifyEndPoint(folder);
                using (NotifySocket s = Lane.Connect(at))
                {
                    Lane.Handshake(s, at, key, Purpose.Stop, 0);
                    Lane.ReadResult(s, at, folder);
                    return true;
                }
            }
            catch (UntrustedWorkFolderException) { throw; }
            catch (HandshakeException e)
            {
                if (e.Result != InUse) return false;
                string text = e.Message;
                int i = text.IndexOf("): ", StringComparison.Ordinal);
                inUse = i >= 0 ? text.Substring(i + 3) : text;
                return false;
            }
            catch (LessPyException) { return false; }
            catch (SocketException) { return false; }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        }
    }
}
