using System;
using System.Collections.Generic;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Net.WebSockets;
using System.Security.Authentication;
using System.Security.Cryptography;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace LessPy
{
    /// <summary>Opening a remote lane: the websocket upgrade, the relay's hello, and what a failure means.</summary>
    internal sealed partial class RemoteLane
    {
        /// <summary>The most a hello may hold.</summary>
        const int MaxHello = 64 * 1024;
        /// <summary>The most of a failed upgrade's body that is read to explain it.</summary>
        const int MaxErrorBody = 16 * 1024;

        /// <summary>
        /// Opens a lane: the websocket upgrade (with the token and the client id) and the relay's hello, waiting until
        /// <paramref name="deadline"/> or for the handshake's own time, whichever comes first, and while
        /// <paramref name="ct"/> is not cancelled. <paramref name="pid"/> is the session's server pid (informational).
        /// </summary>
        /// <exception cref="ServerUnavailableException">Nothing answers at the URL, no such session, it went away, the certificate is not trusted.</exception>
        /// <exception cref="HandshakeException">Jupyter Server refused the token, the relay refused the session, the session is busy (its limits), another protocol version.</exception>
        /// <exception cref="NotAnsweringException"><paramref name="deadline"/> passed first.</exception>
        /// <exception cref="OperationCanceledException"><paramref name="ct"/> was cancelled meanwhile.</exception>
        public static RemoteLane Open(RemoteEndpoint at, ulong clientId, out Hello hello, out int pid, long deadline, CancellationToken ct)
        {
            long own = Handshake.DefaultDeadline();
            bool callLimit = deadline < own;
            long limit = callLimit ? deadline : own;
            long start = own - WaitTimings.HandshakeTicks;
            WebSocket ws = Upgrade(at, clientId, limit, ct, start, callLimit);
            try
            {
                var buf = new byte[MaxHello];
                int got = 0;
                WebSocketReceiveResult r;
                do
                {
                    Task<WebSocketReceiveResult> t = ws.ReceiveAsync(new ArraySegment<byte>(buf, got, buf.Length - got), CancellationToken.None);
                    if (!Finish(ws.Abort, t, limit, ct)) throw TooLate(at, "the relay's hello", start, callLimit);
                    if (t.IsFaulted || t.IsCanceled)
                        throw new ServerUnavailableException("the connection to " + at.Display + " failed before the relay's hello: "
                            + (t.Exception != null ? Inner(t.Exception).Message : "cancelled"), t.Exception);
                    r = t.Result;
                    if (r.MessageType == WebSocketMessageType.Close) throw Refused(at, ws);
                    got += r.Count;
                    if (!r.EndOfMessage && got == buf.Length) throw new ProtocolException("the relay's hello at " + at.Display + " is longer than " + MaxHello + " bytes");
                } while (!r.EndOfMessage);
                if (r.MessageType != WebSocketMessageType.Text)
                    throw new ProtocolException(at.Display + " did not start with a lesspy hello (a text message): is it a lesspy relay?");
                RemoteLane lane = FromHello(ws, at, Encoding.UTF8.GetString(buf, 0, got), out hello, out pid);
                lane.StartReceiving();
                return lane;
            }
            catch
            {
                ws.Abort();
                ws.Dispose();
                throw;
            }
        }

        /// <summary>
        /// A lane to <paramref name="url"/> on its own, outside any channel (the benchmark's echo floor drives the same
        /// transport code as the calls): parsed as <see cref="LessPythonInvoke.Connect{T}(string)"/> parses a URL.
        /// </summary>
        internal static RemoteLane OpenForBench(string url)
        {
            RemoteEndpoint at = RemoteEndpoint.Parse(url, null);
            Hello hello;
            int pid;
            return Open(at, 1, out hello, out pid, Handshake.DefaultDeadline(), CancellationToken.None);
        }

        /// <summary>
        /// The websocket upgrade with <see cref="ClientWebSocket"/>: the token and the client id in its headers, the
        /// certificate rule of <see cref="TlsTrust"/>. Where that websocket never asks the validation callback (Mono's
        /// ClientWebSocket ignores it) and a certificate to trust was given, the upgrade is made over a TLS stream of our
        /// own that does (<see cref="UpgradeOwnTls"/>).
        /// </summary>
        static WebSocket Upgrade(RemoteEndpoint at, ulong clientId, long limit, CancellationToken ct, long start, bool callLimit)
        {
            var ws = new ClientWebSocket();
            try
            {
                ws.Options.SetRequestHeader(ClientHeader, clientId.ToString(CultureInfo.InvariantCulture));
                if (at.Token != null) ws.Options.SetRequestHeader("Authorization", "token " + at.Token);
                TlsTrust.Apply(ws.Options, at);
                at.TlsRefusal = null;
                at.TlsAsked = false;
                Task connect;
                try { connect = ws.ConnectAsync(at.Socket, CancellationToken.None); }
                catch (Exception e) { throw Explain(at, e); }
                if (!Finish(ws.Abort, connect, limit, ct)) throw TooLate(at, "the websocket upgrade", start, callLimit);
                if (connect.IsFaulted || connect.IsCanceled)
                {
                    Exception e = connect.Exception != null ? (Exception)connect.Exception : new WebSocketException("the upgrade was cancelled");
                    if (at.Trusted != null && !at.TlsAsked && Inner(e) is AuthenticationException)
                    {
                        ws.Dispose();
                        return UpgradeOwnTls(at, clientId, limit, ct, start, callLimit);
                    }
                    throw Explain(at, e);
                }
                return ws;
            }
            catch
            {
                ws.Abort();
                ws.Dispose();
                throw;
            }
        }

        const string ClientHeader = "X-LessPy-Client";
        const string WebSocketGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

        /// <summary>
        /// The upgrade over a TLS stream whose validation applies <see cref="TlsTrust"/>'s rule (RFC 6455 section 4.1),
        /// then the platform's websocket over that stream (<see cref="WebSocket.CreateClientWebSocket"/>).
        /// </summary>
        static WebSocket UpgradeOwnTls(RemoteEndpoint at, ulong clientId, long limit, CancellationToken ct, long start, bool callLimit)
        {
            var tcp = new TcpClient();
            Stream stream = null;
            try
            {
                tcp.NoDelay = true;
                Task c = tcp.ConnectAsync(at.Socket.Host, at.Socket.Port);
                if (!Finish(tcp.Close, c, limit, ct)) throw TooLate(at, "the connection", start, callLimit);
                if (c.IsFaulted || c.IsCanceled) throw Explain(at, c.Exception != null ? (Exception)c.Exception : new IOException("cancelled"));
                var ssl = new SslStream(tcp.GetStream(), false, TlsTrust.Callback(at));
                stream = ssl;
                Task auth = ssl.AuthenticateAsClientAsync(at.Socket.Host);
                if (!Finish(tcp.Close, auth, limit, ct)) throw TooLate(at, "the TLS handshake", start, callLimit);
                if (auth.IsFaulted || auth.IsCanceled) throw Explain(at, auth.Exception != null ? (Exception)auth.Exception : new IOException("cancelled"));

                var nonce = new byte[16];
                using (var rng = RandomNumberGenerator.Create()) rng.GetBytes(nonce);
                string key = Convert.ToBase64String(nonce);
                var req = new StringBuilder();
                req.Append("GET ").Append(at.Socket.PathAndQuery).Append(" HTTP/1.1\r\n");
                req.Append("Host: ").Append(at.Socket.Authority).Append("\r\n");
                req.Append("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n");
                req.Append("Sec-WebSocket-Key: ").Append(key).Append("\r\n");
                req.Append(ClientHeader).Append(": ").Append(clientId.ToString(CultureInfo.InvariantCulture)).Append("\r\n");
                if (at.Token != null) req.Append("Authorization: token ").Append(at.Token).Append("\r\n");
                req.Append("\r\n");
                byte[] head = Encoding.ASCII.GetBytes(req.ToString());
                Task w = ssl.WriteAsync(head, 0, head.Length);
                if (!Finish(tcp.Close, w, limit, ct)) throw TooLate(at, "the websocket upgrade", start, callLimit);
                if (w.IsFaulted) throw Explain(at, w.Exception);

                // the response's head, byte by byte: what follows it (the hello) is the websocket's
                var line = new List<byte>();
                var lines = new List<string>();
                var one = new byte[1];
                while (true)
                {
                    Task<int> rd = ssl.ReadAsync(one, 0, 1);
                    if (!Finish(tcp.Close, rd, limit, ct)) throw TooLate(at, "the websocket upgrade", start, callLimit);
                    if (rd.IsFaulted || rd.Result == 0) throw Explain(at, new WebSocketException("the connection closed during the upgrade"));
                    if (one[0] == (byte)'\n')
                    {
                        string text = Encoding.ASCII.GetString(line.ToArray()).TrimEnd('\r');
                        line.Clear();
                        if (text.Length == 0) break;
                        lines.Add(text);
                        if (lines.Count > 100) throw new ProtocolException(at.Display + " sent an upgrade response of more than 100 lines");
                    }
                    else line.Add(one[0]);
                }
                string[] status = lines.Count > 0 ? lines[0].Split(' ') : new string[0];
                if (status.Length < 2 || status[1] != "101")
                    throw Explain(at, new WebSocketException("the server answered " + (lines.Count > 0 ? lines[0] : "nothing") + " instead of 101"));
                string accept;
                using (var sha = SHA1.Create()) accept = Convert.ToBase64String(sha.ComputeHash(Encoding.ASCII.GetBytes(key + WebSocketGuid)));
                bool accepted = false;
                foreach (string h in lines)
                    if (h.StartsWith("Sec-WebSocket-Accept:", StringComparison.OrdinalIgnoreCase) && h.Substring(21).Trim() == accept) accepted = true;
                if (!accepted) throw new ProtocolException(at.Display + " accepted the upgrade without the right Sec-WebSocket-Accept");
                return WebSocket.CreateClientWebSocket(ssl, null, 16 * 1024, 16 * 1024, WebSocket.DefaultKeepAliveInterval, false,
                    WebSocket.CreateClientBuffer(16 * 1024, 16 * 1024));
            }
            catch
            {
                if (stream != null) stream.Dispose();
                tcp.Close();
                throw;
            }
        }

        /// <summary>
        /// Waits for <paramref name="t"/> until <paramref name="limit"/>; false when that passed (the websocket is aborted).
        /// A cancelled <paramref name="ct"/> aborts the websocket and throws.
        /// </summary>
        static bool Finish(Action abort, Task t, long limit, CancellationToken ct)
        {
            bool cancellable = ct.CanBeCanceled;
            while (!t.IsCompleted)
            {
                if (cancellable && ct.IsCancellationRequested)
                {
                    abort();
                    ct.ThrowIfCancellationRequested();
                }
                long left = limit - Stopwatch.GetTimestamp();
                if (left <= 0)
                {
                    abort();
                    return false;
                }
                int ms = (int)Math.Min(left * 1000 / Stopwatch.Frequency + 1, int.MaxValue);
                if (cancellable) ms = Math.Min(ms, WaitTimings.CancelSliceMicroseconds / 1000);
                try { t.Wait(ms); }
                catch (AggregateException) { }          // looked at by the caller
            }
            return true;
        }

        static Exception TooLate(RemoteEndpoint at, string what, long start, bool callLimit)
        {
            double s = (Stopwatch.GetTimestamp() - start) / (double)Stopwatch.Frequency;
            if (callLimit) return new NotAnsweringException(what, s, at.Display + " did not send " + what + " within the call's time");
            return new ServerUnavailableException(at.Display + " did not complete " + what + " within " + s.ToString("0.#", CultureInfo.InvariantCulture)
                + " s: Jupyter Server (or a proxy in between) accepted the connection but does not answer: it is stopped, overloaded, or the network drops packets");
        }

        /// <summary>The relay closed the websocket instead of sending its hello (section 10.3: 4404 gone, 4503 refused).</summary>
        static Exception Refused(RemoteEndpoint at, WebSocket ws)
        {
            int code = ws.CloseStatus.HasValue ? (int)ws.CloseStatus.Value : 0;
            string reason = ws.CloseStatusDescription ?? "";
            string tail = reason.Length > 0 ? ": " + reason : "";
            if (code == 4503 && reason.IndexOf("does not answer", StringComparison.Ordinal) >= 0)
                return new ServerUnavailableException("the lesspy session '" + at.Session + "' at " + at.Display + " does not answer the relay" + tail
                    + ": it is stopped or overloaded");
            if (code == 4503)
                return new HandshakeException("the lesspy session '" + at.Session + "' at " + at.Display + " refused the lane" + tail,
                    (int)(reason.IndexOf("is busy", StringComparison.Ordinal) >= 0 ? HandshakeResult.Busy : HandshakeResult.WrongKey), reason);
            if (code == 4404)
                return new ServerUnavailableException("no lesspy session '" + at.Session + "' answers at " + at.Display + tail
                    + ". Run %lesspy serve --name " + at.Session + " in a notebook of that Jupyter Server (or `lesspy serve --name " + at.Session + "` there)");
            return new ServerUnavailableException("the lesspy relay at " + at.Display + " closed the websocket before its hello (code " + code + tail + ")");
        }

        /// <summary>The lane the hello describes, checked (protocol version, fields).</summary>
        static RemoteLane FromHello(WebSocket ws, RemoteEndpoint at, string text, out Hello hello, out int pid)
        {
            Dictionary<string, string> d;
            try { d = FlatJson.Parse(text); }
            catch (FormatException e) { throw new ProtocolException("the relay's hello at " + at.Display + " is not a JSON object: " + e.Message); }
            string version;
            if (!d.TryGetValue("lesspy", out version)) throw new ProtocolException(at.Display + " sent a hello without \"lesspy\": is it a lesspy relay?");
            long protocol = FlatJson.Long(d, "protocol", -1);
            if (protocol != Wire.Version)
                throw new HandshakeException("the lesspy relay at " + at.Display + " (lesspy " + version + ") speaks protocol version " + protocol
                    + " and this client version " + Wire.Version + ": use the LessPy C# client that comes with the server's lesspy-kernel package",
                    (int)HandshakeResult.UnsupportedVersion);
            string sid;
            ulong session;
            if (!d.TryGetValue("session_id", out sid) || !ulong.TryParse(sid, NumberStyles.None, CultureInfo.InvariantCulture, out session))
                throw new ProtocolException("the relay's hello at " + at.Display + " has no session_id");
            long max = FlatJson.Long(d, "max_message", -1);
            long heartbeat = FlatJson.Long(d, "heartbeat_ms", -1);
            if (max <= 0 || heartbeat <= 0 || heartbeat > int.MaxValue / SilentHeartbeats)
                throw new ProtocolException("the relay's hello at " + at.Display + " has no usable max_message or heartbeat_ms: " + text);
            hello = new Hello();
            hello.Version = (ushort)protocol;
            hello.Mode = (ServerMode)FlatJson.Long(d, "mode", 0);
            hello.Session = session;
            pid = (int)FlatJson.Long(d, "pid", -1);
            return new RemoteLane(ws, at, (int)FlatJson.Long(d, "lane", -1), session, max, (int)heartbeat);
        }

        // ---------------------------------------------------------------- a failed upgrade, explained

        /// <summary>
        /// Why the upgrade failed: a certificate not trusted, nothing listening, or an HTTP status, which a plain GET of the
        /// same URL shows with the relay's message (the websocket client does not give the body of a refused upgrade).
        /// </summary>
        static Exception Explain(RemoteEndpoint at, Exception e)
        {
            Exception inner = Inner(e);
            if (at.TlsRefusal != null || inner is AuthenticationException)
                return new ServerUnavailableException("cannot open a secure connection to " + at.Display + ": "
                    + (at.TlsRefusal ?? "the TLS handshake failed, the server's certificate is not trusted here (" + e.GetBaseException().Message + ")")
                    + ". The certificate is checked against this machine's trust store: for a self-signed "
                    + "certificate, pass it to trust: LessPythonInvoke.Connect<T>(server, session, token, new X509Certificate2(\"jupyter.pem\"))", e);
            int status;
            string body;
            string failure = Get(at, out status, out body);
            if (status == 0)
                return new ServerUnavailableException("cannot connect to " + at.Display + ": " + (failure ?? inner.Message)
                    + ". Is Jupyter Server running there (`jupyter server list` on that machine) and reachable from here?", e);
            string message = BodyMessage(body);
            string http = "HTTP " + status;
            if (status == 401 || (status == 403 && IsGeneric(message)))
                return new HandshakeException("Jupyter Server at " + at.Display + " refused the token (" + http + (message.Length > 0 ? ": " + message : "")
                    + "; token from " + at.TokenOrigin + "). Use the token Jupyter Server printed at start (`jupyter server list` shows it): "
                    + "in the URL's ?token=, in the " + RemoteEndpoint.TokenVariable + " environment variable, or as Connect's token argument",
                    (int)HandshakeResult.WrongKey, message);
            if (status == 403)
                return new HandshakeException("the lesspy relay at " + at.Display + " refused the session (" + http + "): " + message, (int)HandshakeResult.WrongKey, message);
            if (status == 404 && message.IndexOf("lesspy", StringComparison.OrdinalIgnoreCase) < 0)
                return new ServerUnavailableException("no lesspy relay answers at " + at.Display + " (" + http + "): the Jupyter Server there does not have the "
                    + "lesspy_kernel server extension enabled (`jupyter server extension list`; install lesspy-kernel in its environment and restart it), "
                    + "or the base URL is wrong", e);
            if (status >= 200 && status < 300)
                return new ServerUnavailableException("the websocket upgrade to " + at.Display + " failed (" + inner.Message + ") although a plain GET "
                    + "answers " + http + ": a proxy in between may not pass websockets", e);
            return new ServerUnavailableException("cannot connect to " + at.Display + " (" + http + ")" + (message.Length > 0 ? ": " + message : ""), e);
        }

        /// <summary>A 403's message that says only "forbidden" (Jupyter Server's own refusal), not the relay's reason.</summary>
        static bool IsGeneric(string message)
        {
            string m = message.Trim().TrimEnd('.').ToLowerInvariant();
            return m.Length == 0 || m == "forbidden" || m == "unauthorized" || m.StartsWith("403", StringComparison.Ordinal);
        }

        /// <summary>GETs the session's URL: its status and body; the failure's text when nothing answered (status 0).</summary>
        static string Get(RemoteEndpoint at, out int status, out string body)
        {
            status = 0;
            body = "";
            try
            {
                var req = (HttpWebRequest)WebRequest.Create(at.Http);
                req.Method = "GET";
                req.Timeout = 5000;
                req.ReadWriteTimeout = 5000;
                req.Proxy = null;
                req.Accept = "application/json";
                if (at.Token != null) req.Headers[HttpRequestHeader.Authorization] = "token " + at.Token;
                TlsTrust.Apply(req, at);
                HttpWebResponse resp;
                try { resp = (HttpWebResponse)req.GetResponse(); }
                catch (WebException e)
                {
                    resp = e.Response as HttpWebResponse;
                    if (resp == null) return e.Message;
                }
                using (resp)
                {
                    status = (int)resp.StatusCode;
                    body = ReadBody(resp);
                }
                return null;
            }
            catch (Exception e) { return e.Message; }
        }

        static string ReadBody(HttpWebResponse resp)
        {
            using (Stream s = resp.GetResponseStream())
            {
                var buf = new byte[MaxErrorBody];
                int got = 0, n;
                while (got < buf.Length && (n = s.Read(buf, got, buf.Length - got)) > 0) got += n;
                return Encoding.UTF8.GetString(buf, 0, got);
            }
        }

        /// <summary>
        /// The module the session serves, from the relay's status of it (a plain GET of its URL): "" for one that names none
        /// (a notebook's).
        /// </summary>
        /// <exception cref="ServerUnavailableException">The status cannot be read.</exception>
        internal static string ServedModule(RemoteEndpoint at)
        {
            int status;
            string body;
            string failure = Get(at, out status, out body);
            if (status != 200)
                throw new ServerUnavailableException("cannot read the status of the lesspy session '" + at.Session + "' at " + at.Display + ": "
                    + (status == 0 ? failure : "HTTP " + status + " " + BodyMessage(body)));
            try
            {
                string module;
                return FlatJson.Parse(body.Trim()).TryGetValue("module", out module) && module != "null" ? module : "";
            }
            catch (FormatException e)
            {
                throw new ServerUnavailableException("the status of the lesspy session '" + at.Session + "' at " + at.Display + " is not JSON: " + e.Message);
            }
        }

        /// <summary>The "message" of a JSON error body (Jupyter's and the relay's), else the body's text in short.</summary>
        static string BodyMessage(string body)
        {
            string t = body.Trim();
            if (t.StartsWith("{", StringComparison.Ordinal))
            {
                try
                {
                    Dictionary<string, string> d = FlatJson.Parse(t);
                    string m;
                    if (d.TryGetValue("message", out m) && m != "null") return m;
                }
                catch (FormatException) { }
            }
            if (t.StartsWith("<", StringComparison.Ordinal)) return "";        // an HTML error page
            return t.Length > 300 ? t.Substring(0, 300) + "..." : t;
        }
    }
}
