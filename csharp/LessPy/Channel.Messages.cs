using System;
using System.Diagnostics;
using System.IO;
using System.Threading;

namespace LessPy
{
    /// <summary>What the channel's errors say: why a call got no answer, and whether the server is alive.</summary>
    internal sealed partial class Channel
    {

        static string TimeoutText(TimeSpan t)
        {
            return t.TotalSeconds >= 1 ? t.TotalSeconds.ToString("0.###") + " s" : t.TotalMilliseconds.ToString("0.###") + " ms";
        }

        string TimeoutMessage(MethodBinding m)
        {
            string head = "the call to " + m.PyName + " did not return within " + TimeoutText(_timeout) + " (ILessPyConnection.CallTimeout); "
                + "the server was told to abandon it (a call not yet started never runs; a running one is interrupted where Python allows) "
                + "and the next call goes on another lane";
            char state = _folder == null ? '?' : ServerState(_pid);     // a remote server's process is not on this machine
            if (state == '\0') return head + ". The server (pid " + _pid + ") is no longer running: it has stopped or crashed";
            if (state == 'T' || state == 't') return head + ". The server (pid " + _pid + ") is alive but not answering" + StateText(_pid, state);
            if (_mode == ServerMode.Notebook)
                return head + ". This notebook runs calls on the kernel's main thread, between cells: a running cell or an earlier call may "
                    + "delay it. Wait for it, raise CallTimeout, or serve with %lesspy serve --threaded";
            return head;
        }

        string GoneText()
        {
            RemoteEndpoint remote = _source.Remote;
            if (remote != null)
                return "the lesspy session '" + remote.Session + "' at " + remote.Display + " is gone or unreachable: its kernel restarted or stopped, "
                    + "%lesspy stop ran, Jupyter Server stopped, or the network to it was cut. Run "
                    + (_mode == ServerMode.Headless ? "lesspy serve --name " : "%lesspy serve --name ") + remote.Session
                    + " there again: the next call reconnects";
            if (_mode == ServerMode.Headless)
            {
                // a server that is exiting closes its connections a moment before its process is gone: give it that moment
                char state = ServerState(_pid);
                for (int i = 0; i < 10 && state != '\0'; i++)
                {
                    Thread.Sleep(20);
                    state = ServerState(_pid);
                }
                if (state != '\0')
                    return "the headless server (pid " + _pid + ") closed this connection but is still running" + StateText(_pid, state)
                        + "; see " + _folder.File(WorkFolder.LogFile);
                return "the headless server (pid " + _pid + ") has stopped or crashed; see " + _folder.File(WorkFolder.LogFile);
            }
            return "the notebook's lesspy server (kernel pid " + _pid + ") has stopped: the kernel restarted or died, or %lesspy stop ran; "
                + "run %lesspy serve again";
        }

        /// <summary>
        /// The server's FUNCTION_NOT_FOUND text, plus the snake_case form of a name with capitals (the C# method name
        /// that [PythonImport] without a name sends as it is), which says how to write the attribute for the names the server
        /// suggests.
        /// </summary>
        static string NotFoundText(string msg, MethodBinding m)
        {
            string snake = WireType.SnakeCase(m.PyName);
            if (snake == m.PyName) return msg;
            // (after the server's "did you mean 'x'?" a space, not a full stop)
            return msg + (msg.EndsWith("?") ? " " : ". ") + "Python functions are usually snake_case: for the Python function " + snake
                + " write [PythonImport(\"" + snake + "\")] (a [PythonImport] without a name calls the C# method's name as it is)";
        }

        /// <summary>
        /// The server's RESULT_MISMATCH text for a method returning an enum: the server only knows the enum's underlying type
        /// (an enum travels as its integer), so "C# return type byte" becomes "C# return type Level, an enum of byte,".
        /// </summary>
        static string ResultMismatchText(string msg, MethodBinding m)
        {
            Type t = m.ReturnType.ClrType;
            if (t == null) return msg;
            t = Nullable.GetUnderlyingType(t) ?? t;
            if (!t.IsEnum) return msg;
            string underlying = WireType.CSharpName(Enum.GetUnderlyingType(t));
            string said = "C# return type " + underlying;
            int at = msg.IndexOf(said, StringComparison.Ordinal);
            if (at < 0) return msg;
            return msg.Substring(0, at) + "C# return type " + WireType.CSharpName(t) + ", an enum of " + underlying + "," + msg.Substring(at + said.Length);
        }

        /// <summary>What a remote lane knows of why its connection ended (" (why)"), "" for a mapped lane.</summary>
        static string LostText(IFrameTransport t)
        {
            var r = t as RemoteLane;
            return r != null && r.LostReason.Length > 0 ? " (" + r.LostReason + ")" : "";
        }

        /// <summary>
        /// The state letter of process <paramref name="pid"/> as /proc shows it ('R' running, 'S' sleeping, 'T' stopped ...),
        /// '?' when it is alive but its state cannot be read (another system, another user), '\0' when it is gone.
        /// </summary>
        static char ServerState(int pid)
        {
            if (pid <= 0) return '\0';
            if (!Posix.IsLinux)
            {
                try
                {
                    using (var p = Process.GetProcessById(pid)) return p.HasExited ? '\0' : '?';
                }
                catch (ArgumentException) { return '\0'; }
                catch (InvalidOperationException) { return '\0'; }
            }
            if (!Posix.ProcessAlive(pid)) return '\0';
            try
            {
                string stat = Posix.ReadAllText("/proc/" + pid + "/stat");
                int close = stat.LastIndexOf(')');
                return close > 0 && close + 2 < stat.Length ? stat[close + 2] : '?';
            }
            catch (IOException) { return '?'; }
            catch (UnauthorizedAccessException) { return '?'; }
        }

        /// <summary>What a live server's state means for a caller that got no answer (empty for a plain running state).</summary>
        static string StateText(int pid, char state)
        {
            if (state == 'T' || state == 't')
                return "; it is stopped (process state " + state + ": SIGSTOP, Ctrl-Z or a debugger; `kill -CONT " + pid + "` resumes it)";
            if (state == 'D') return " (process state D: blocked in the kernel, e.g. on a slow or full disk)";
            return "";
        }

        /// <summary>
        /// The error for a lane whose handshake did not come in time: a live server is "not answering" (a
        /// <see cref="CallTimeoutException"/> for a call, <see cref="ServerUnavailableException"/> for Connect), a
        /// dead one has stopped or crashed (<see cref="ServerUnavailableException"/>).
        /// </summary>
        Exception NotAnswering(NotAnsweringException e, string what)
        {
            if (_folder == null)
            {
                // a remote server: its process cannot be looked at from here
                if (what == null) return new ServerUnavailableException("connecting to " + _source.Where + ": " + e.Message, e);
                return new CallTimeoutException("opening a connection to " + _source.Where + " for " + what + " got no answer within "
                    + TimeoutText(_timeout) + " (ILessPyConnection.CallTimeout): " + e.Message + ". Jupyter Server or the network to it is slow or "
                    + "not answering; wait for it or raise CallTimeout");
            }
            int pid = _pid;
            if (pid <= 0)
            {
                try { pid = _folder.ReadNumber(WorkFolder.PidFile); }
                catch (Exception) { pid = -1; }
            }
            char state = ServerState(pid);
            string got = e.What == NotifySocket.ConnectWhat ? " got no connection" : " got no handshake";
            string waited = what == null
                ? "connecting to " + _folder.Path + got + " within " + e.Seconds.ToString("0.###") + " s"
                : "opening a lane for " + what + got + " within " + TimeoutText(_timeout) + " (ILessPyConnection.CallTimeout)";
            if (state == '\0')
            {
                string gone = "the server of " + _folder.Path + (pid > 0 ? " (pid " + pid + ")" : "") + " has stopped or crashed: "
                    + waited + " (" + e.Message + ")";
                if (_mode == ServerMode.Headless) gone += "; see " + _folder.File(WorkFolder.LogFile);
                return new ServerUnavailableException(gone, e);
            }
            string text = "the server of " + _folder.Path + " (pid " + pid + ") is alive but not answering" + StateText(pid, state) + ": " + waited
                + " (" + e.Message + ")";
            if (state != 'T' && state != 't')
                text += ". It is busy: a running call holds Python's GIL (pure-Python or C code that does not release it), "
                    + (_mode == ServerMode.Notebook ? "or a notebook cell is running, " : "")
                    + "or the machine is overloaded. Wait for it or raise CallTimeout";
            if (what == null) return new ServerUnavailableException(text, e);
            return new CallTimeoutException(text);
        }
    }
}
