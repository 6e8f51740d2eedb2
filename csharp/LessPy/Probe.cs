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
            catch (LessPyException) { return false; }
            catch (SocketException) { return false; }
            catch (ArgumentException) { return false; }
        }

        /// <summary>Asks the folder's server to stop (handshake purpose 2). False when it could not be asked.</summary>
        public static bool Stop(WorkFolder folder)
        {
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
            catch (LessPyException) { return false; }
            catch (SocketException) { return false; }
            catch (IOException) { return false; }
            catch (UnauthorizedAccessException) { return false; }
        }
    }
}
