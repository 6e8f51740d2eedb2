using System;
using System.Collections.Generic;
using System.Globalization;
using System.Text;

namespace LessPy
{
    /// <summary>
    /// Reads a flat JSON object (the relay's hello, its error bodies): string keys to the values' text (strings
    /// unescaped; numbers, true, false and null as written). Nested objects and arrays are skipped whole.
    /// </summary>
    internal static class FlatJson
    {
        /// <exception cref="FormatException">Not a JSON object.</exception>
        public static Dictionary<string, string> Parse(string text)
        {
            var d = new Dictionary<string, string>(StringComparer.Ordinal);
            int i = 0;
            Skip(text, ref i);
            Expect(text, ref i, '{');
            Skip(text, ref i);
            if (Peek(text, i) == '}') return d;
            while (true)
            {
                Skip(text, ref i);
                string key = ReadString(text, ref i);
                Skip(text, ref i);
                Expect(text, ref i, ':');
                Skip(text, ref i);
                d[key] = ReadValue(text, ref i);
                Skip(text, ref i);
                char c = Peek(text, i++);
                if (c == '}') return d;
                if (c != ',') throw new FormatException("',' or '}' expected at " + (i - 1));
            }
        }

        /// <summary>The number at <paramref name="key"/> as a long, or <paramref name="fallback"/> when absent or not an integer.</summary>
        public static long Long(Dictionary<string, string> d, string key, long fallback)
        {
            string v;
            long n;
            if (d.TryGetValue(key, out v) && long.TryParse(v, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out n)) return n;
            return fallback;
        }

        static char Peek(string s, int i)
        {
            if (i >= s.Length) throw new FormatException("the text ends early");
            return s[i];
        }

        static void Skip(string s, ref int i)
        {
            while (i < s.Length && (s[i] == ' ' || s[i] == '\t' || s[i] == '\r' || s[i] == '\n')) i++;
        }

        static void Expect(string s, ref int i, char c)
        {
            if (Peek(s, i) != c) throw new FormatException("'" + c + "' expected at " + i);
            i++;
        }

        static string ReadValue(string s, ref int i)
        {
            char c = Peek(s, i);
            if (c == '"') return ReadString(s, ref i);
            if (c == '{' || c == '[')
            {
                int depth = 0;
                int start = i;
                while (true)
                {
                    char x = Peek(s, i);
                    if (x == '"') { ReadString(s, ref i); continue; }
                    i++;
                    if (x == '{' || x == '[') depth++;
                    else if ((x == '}' || x == ']') && --depth == 0) return s.Substring(start, i - start);
                }
            }
            int b = i;
            while (i < s.Length && s[i] != ',' && s[i] != '}' && s[i] != ' ' && s[i] != '\n' && s[i] != '\r' && s[i] != '\t') i++;
            if (i == b) throw new FormatException("a value expected at " + b);
            return s.Substring(b, i - b);
        }

        static string ReadString(string s, ref int i)
        {
            Expect(s, ref i, '"');
            var sb = new StringBuilder();
            while (true)
            {
                char c = Peek(s, i++);
                if (c == '"') return sb.ToString();
                if (c != '\\') { sb.Append(c); continue; }
                char e = Peek(s, i++);
                switch (e)
                {
                    case 'n': sb.Append('\n'); break;
                    case 't': sb.Append('\t'); break;
                    case 'r': sb.Append('\r'); break;
                    case 'b': sb.Append('\b'); break;
                    case 'f': sb.Append('\f'); break;
                    case 'u':
                        if (i + 4 > s.Length) throw new FormatException("a short \\u escape");
                        sb.Append((char)int.Parse(s.Substring(i, 4), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                        i += 4;
                        break;
                    default: sb.Append(e); break;
                }
            }
        }
    }
}
