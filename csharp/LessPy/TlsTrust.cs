using System;
using System.Collections.Generic;
using System.Net;
using System.Net.Security;
using System.Net.WebSockets;
using System.Reflection;
using System.Security.Cryptography.X509Certificates;

namespace LessPy
{
    /// <summary>
    /// How a wss:// connection (and the GET that explains a failed upgrade) validates Jupyter Server's certificate:
    /// the platform's own validation (Mono's or Windows' trust store) by default; with a certificate given to trust,
    /// also a server whose leaf certificate is exactly that one (a self-signed certificate), when the only chain
    /// errors are an untrusted root or a partial chain and the host name matches.
    /// <para>
    /// Where <c>ClientWebSocketOptions.RemoteCertificateValidationCallback</c> exists (.NET Core 2.1 and later, Mono 6;
    /// not in netstandard2.0's surface, so it is set by reflection) the rule is given per connection. Mono's
    /// ClientWebSocket has the property but never asks it: when a certificate to trust was given and the upgrade failed
    /// in TLS without asking, the lane makes the upgrade over an SslStream of its own that does
    /// (RemoteLane.UpgradeOwnTls). Where the property is missing (.NET Framework) the websocket validates through
    /// <see cref="ServicePointManager.ServerCertificateValidationCallback"/>: a callback is installed once that applies
    /// these rules to the host:port of connections given a certificate and, for every other host, calls the callback
    /// that was there before (or accepts only an error-free chain, the default).
    /// </para>
    /// </summary>
    internal static class TlsTrust
    {
        static readonly PropertyInfo OptionsCallback =
            typeof(ClientWebSocketOptions).GetProperty("RemoteCertificateValidationCallback", BindingFlags.Public | BindingFlags.Instance);

        static readonly object Lock = new object();
        static readonly Dictionary<string, RemoteEndpoint> Global = new Dictionary<string, RemoteEndpoint>(StringComparer.OrdinalIgnoreCase);
        static RemoteCertificateValidationCallback _previous;
        static bool _installed;

        /// <summary>Applies the rules to a websocket about to connect to <paramref name="at"/>.</summary>
        public static void Apply(ClientWebSocketOptions options, RemoteEndpoint at)
        {
            if (at.Socket.Scheme != "wss") return;
            RemoteCertificateValidationCallback check = Callback(at);
            if (OptionsCallback != null && OptionsCallback.CanWrite)
            {
                OptionsCallback.SetValue(options, check);
                return;
            }
            if (at.Trusted == null) return;            // the default validation, with no callback of ours
            lock (Lock)
            {
                Global[Key(at.Socket)] = at;
                if (_installed) return;
                _previous = ServicePointManager.ServerCertificateValidationCallback;
                ServicePointManager.ServerCertificateValidationCallback = GlobalCheck;
                _installed = true;
            }
        }

        /// <summary>The rule for <paramref name="at"/> as a validation callback (for an SslStream of our own).</summary>
        public static RemoteCertificateValidationCallback Callback(RemoteEndpoint at)
        {
            return (sender, cert, chain, errors) => Validate(at, cert, chain, errors);
        }

        /// <summary>Applies the rules to the plain request that explains a failed upgrade.</summary>
        public static void Apply(HttpWebRequest request, RemoteEndpoint at)
        {
            if (at.Http.Scheme != Uri.UriSchemeHttps) return;
            request.ServerCertificateValidationCallback = Callback(at);
        }

        static string Key(Uri u) { return u.Host + ":" + u.Port; }

        static bool GlobalCheck(object sender, X509Certificate cert, X509Chain chain, SslPolicyErrors errors)
        {
            RemoteEndpoint at = null;
            var request = sender as HttpWebRequest;
            if (request != null)
                lock (Lock) Global.TryGetValue(Key(request.RequestUri), out at);
            if (at != null) return Validate(at, cert, chain, errors);
            RemoteCertificateValidationCallback previous = _previous;
            if (previous != null) return previous(sender, cert, chain, errors);
            return errors == SslPolicyErrors.None;
        }

        /// <summary>
        /// The rule: no error, or the given certificate is the leaf, the name matches, and the chain is only untrusted or
        /// partial. A refusal is recorded in <see cref="RemoteEndpoint.TlsRefusal"/> for the error message.
        /// </summary>
        static bool Validate(RemoteEndpoint at, X509Certificate cert, X509Chain chain, SslPolicyErrors errors)
        {
            at.TlsAsked = true;
            if (errors == SslPolicyErrors.None) return true;
            string why = Describe(errors, chain);
            if (at.Trusted != null && cert != null && (errors & ~SslPolicyErrors.RemoteCertificateChainErrors) == 0
                && SameCertificate(cert, at.Trusted) && OnlyUntrustedRoot(chain))
                return true;
            at.TlsRefusal = (cert != null ? "its certificate (" + cert.Subject + ") is not trusted: " : "") + why
                + (at.Trusted != null && cert != null && !SameCertificate(cert, at.Trusted) ? "; it is not the certificate given to trust (" + at.Trusted.Subject + ")" : "");
            return false;
        }

        static bool SameCertificate(X509Certificate a, X509Certificate2 b)
        {
            byte[] x = a.GetRawCertData(), y = b.RawData;
            if (x.Length != y.Length) return false;
            for (int i = 0; i < x.Length; i++) if (x[i] != y[i]) return false;
            return true;
        }

        static bool OnlyUntrustedRoot(X509Chain chain)
        {
            if (chain == null) return true;
            foreach (X509ChainStatus s in chain.ChainStatus)
            {
                X509ChainStatusFlags f = s.Status & ~(X509ChainStatusFlags.UntrustedRoot | X509ChainStatusFlags.PartialChain);
                if (f != X509ChainStatusFlags.NoError) return false;
            }
            return true;
        }

        static string Describe(SslPolicyErrors errors, X509Chain chain)
        {
            var parts = new List<string>();
            if ((errors & SslPolicyErrors.RemoteCertificateNameMismatch) != 0) parts.Add("its name does not match the host");
            if ((errors & SslPolicyErrors.RemoteCertificateNotAvailable) != 0) parts.Add("the server sent no certificate");
            if ((errors & SslPolicyErrors.RemoteCertificateChainErrors) != 0)
            {
                var flags = new List<string>();
                if (chain != null)
                    foreach (X509ChainStatus s in chain.ChainStatus) flags.Add(s.Status.ToString());
                parts.Add("its chain does not lead to a trusted root" + (flags.Count > 0 ? " (" + string.Join(", ", flags) + ")" : ""));
            }
            return string.Join("; ", parts);
        }
    }
}
