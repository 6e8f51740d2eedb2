using System;
using System.Security.Cryptography.X509Certificates;
using System.Text;

namespace LessPy
{
    /// <summary>
    /// Where a remote session is (PROTOCOL.md section 10.2): the websocket URL <c>ws[s]://host:port[/base_url]/lesspy/NAME</c>,
    /// the token sent in the Authorization header (never in the URL), and the certificate to trust, if any.
    /// </summary>
    internal sealed class RemoteEndpoint
    {
        /// <summary>The path segment the relay serves sessions under, below Jupyter Server's base URL.</summary>
        internal const string Prefix = "lesspy";
        /// <summary>The environment variable a token is read from when the URL has none (Jupyter's own name for it).</summary>
        internal const string TokenVariable = "JUPYTER_TOKEN";

        /// <summary>The websocket URL (ws or wss), without query.</summary>
        public readonly Uri Socket;
        /// <summary>The same resource as an http(s) URL: what a plain GET asks for the relay's message.</summary>
        public readonly Uri Http;
        /// <summary>The URL as messages show it: http(s), no token.</summary>
        public readonly string Display;
        /// <summary>The session's name.</summary>
        public readonly string Session;
        /// <summary>The token, or null (a server without authentication).</summary>
        public readonly string Token;
        /// <summary>Where the token came from, for a message saying it was refused.</summary>
        public readonly string TokenOrigin;
        /// <summary>A certificate trusted when it is the server's own (a self-signed one), or null: the system's trust only.</summary>
        public readonly X509Certificate2 Trusted;
        /// <summary>Why the last TLS validation for this endpoint refused the server's certificate, or null.</summary>
        public volatile string TlsRefusal;
        /// <summary>Whether a TLS validation callback of ours was asked during the last open (some websockets never ask it).</summary>
        public volatile bool TlsAsked;

        RemoteEndpoint(Uri http, string session, string token, string tokenOrigin, X509Certificate2 trusted)
        {
            Http = http;
            var ws = new UriBuilder(http);
            ws.Scheme = http.Scheme == Uri.UriSchemeHttps ? "wss" : "ws";
            ws.Port = http.Port;
            Socket = ws.Uri;
            Display = http.GetLeftPart(UriPartial.Path);
            Session = session;
            Token = token;
            TokenOrigin = tokenOrigin;
            Trusted = trusted;
        }

        /// <summary>True for a string <see cref="LessPythonInvoke.Connect{T}(string)"/> takes as a URL: http, https, ws or wss.</summary>
        public static bool IsUrl(string s)
        {
            return StartsWith(s, "http://") || StartsWith(s, "https://") || StartsWith(s, "ws://") || StartsWith(s, "wss://");
        }

        static bool StartsWith(string s, string prefix) { return s.StartsWith(prefix, StringComparison.OrdinalIgnoreCase); }

        /// <summary>
        /// Parses <c>http[s]|ws[s]://host:port[/base_url]/lesspy/NAME[?token=T]</c>: the token from the query, else
        /// <see cref="TokenVariable"/>.
        /// </summary>
        /// <exception cref="ArgumentException">Not such a URL (the message shows the expected form).</exception>
        public static RemoteEndpoint Parse(string url, X509Certificate2 trusted)
        {
            Uri u;
            if (!Uri.TryCreate(url, UriKind.Absolute, out u))
                throw new ArgumentException("'" + Redact(url) + "' is not a valid URL; expected " + Form, "url");
            string path = u.AbsolutePath;
            string trimmed = path.TrimEnd('/');
            int cut = trimmed.LastIndexOf('/');
            int at = cut > 0 ? trimmed.LastIndexOf('/', cut - 1) : -1;
            if (cut <= 0 || at < 0 || trimmed.Substring(at + 1, cut - at - 1) != Prefix || cut == trimmed.Length - 1)
                throw new ArgumentException("'" + Redact(url) + "' does not name a lesspy session: expected " + Form, "url");
            string name = Uri.UnescapeDataString(trimmed.Substring(cut + 1));
            string baseUrl = trimmed.Substring(0, at + 1);
            string token = QueryValue(u.Query, "token");
            string origin = "the URL's token parameter";
            if (token == null)
            {
                token = Environment.GetEnvironmentVariable(TokenVariable);
                origin = "the " + TokenVariable + " environment variable";
                if (string.IsNullOrEmpty(token)) { token = null; origin = "none (no token in the URL, " + TokenVariable + " unset)"; }
            }
            return new RemoteEndpoint(Build(u, baseUrl, name), name, token, origin, trusted);
        }

        /// <summary>The session <paramref name="session"/> under Jupyter Server <paramref name="server"/> (its URL with any base_url).</summary>
        /// <exception cref="ArgumentException">Not an absolute http(s)/ws(s) URL, or not a session name.</exception>
        public static RemoteEndpoint Of(Uri server, string session, string token, X509Certificate2 trusted)
        {
            if (!server.IsAbsoluteUri || !IsUrl(server.AbsoluteUri))
                throw new ArgumentException("the server is given as its http(s) URL, such as http://gpu-box:8888/ (with its base URL, if any), not '"
                    + Redact(server.ToString()) + "'", "server");
            CheckName(session);
            string baseUrl = server.AbsolutePath;
            if (!baseUrl.EndsWith("/", StringComparison.Ordinal)) baseUrl += "/";
            string origin = "the token argument";
            if (token == null)
            {
                token = QueryValue(server.Query, "token");
                origin = "the server URL's token parameter";
            }
            if (token == null)
            {
                token = Environment.GetEnvironmentVariable(TokenVariable);
                origin = "the " + TokenVariable + " environment variable";
                if (string.IsNullOrEmpty(token)) { token = null; origin = "none (no token given, " + TokenVariable + " unset)"; }
            }
            return new RemoteEndpoint(Build(server, baseUrl, session), session, token, origin, trusted);
        }

        const string Form = "http[s]://host:port[/base_url]/lesspy/<session name>[?token=<Jupyter Server token>]";

        /// <summary>A session name as section 1 allows it: not empty, no '/' or '\', not '.' or '..'.</summary>
        static void CheckName(string session)
        {
            if (session == null) throw new ArgumentNullException("session");
            if (session.Length == 0 || session.IndexOf('/') >= 0 || session.IndexOf('\\') >= 0 || session == "." || session == "..")
                throw new ArgumentException("a session name is a plain name such as 'demo', not '" + session + "'", "session");
        }

        static Uri Build(Uri from, string baseUrl, string name)
        {
            CheckName(name);
            var b = new UriBuilder(from);
            string scheme = from.Scheme.ToLowerInvariant();
            b.Scheme = scheme == "https" || scheme == "wss" ? Uri.UriSchemeHttps : Uri.UriSchemeHttp;
            b.Port = from.IsDefaultPort ? -1 : from.Port;
            b.Path = baseUrl + Prefix + "/" + Uri.EscapeDataString(name);
            b.Query = "";
            b.Fragment = "";
            b.UserName = "";
            b.Password = "";
            return b.Uri;
        }

        /// <summary>The value of <paramref name="key"/> in a query string ("?a=1&amp;token=x"), unescaped; null when absent.</summary>
        static string QueryValue(string query, string key)
        {
            if (string.IsNullOrEmpty(query)) return null;
            string q = query[0] == '?' ? query.Substring(1) : query;
            foreach (string part in q.Split('&'))
            {
                int eq = part.IndexOf('=');
                string k = eq < 0 ? part : part.Substring(0, eq);
                if (k != key) continue;
                string v = eq < 0 ? "" : Uri.UnescapeDataString(part.Substring(eq + 1).Replace('+', ' '));
                return v.Length == 0 ? null : v;
            }
            return null;
        }

        /// <summary>A URL as a message may show it: the token parameter's value replaced.</summary>
        internal static string Redact(string url)
        {
            if (url == null) return "";
            int i = url.IndexOf("token=", StringComparison.OrdinalIgnoreCase);
            if (i < 0) return url;
            int end = url.IndexOf('&', i);
            var sb = new StringBuilder(url.Substring(0, i + 6)).Append("...");
            if (end >= 0) sb.Append(url.Substring(end));
            return sb.ToString();
        }
    }
}
