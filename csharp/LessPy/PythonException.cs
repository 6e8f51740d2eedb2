using System;

namespace LessPy
{
    /// <summary>
    /// The Python function raised an exception (error kind PYTHON_ERROR). <see cref="Exception.Message"/> is the
    /// exception's own text (Python's <c>str(e)</c>, "" when it has none) and <see cref="PythonType"/> its type, so
    /// <c>e.PythonType + ": " + e.Message</c> reads as Python's last traceback line.
    /// </summary>
    public sealed class PythonException : LessPyException
    {
        internal PythonException(string pythonType, string message, string traceback)
            : base(message ?? "")
        {
            PythonType = pythonType ?? "";
            PythonTraceback = traceback ?? "";
        }

        /// <summary>The Python exception's type name, for example <c>ValueError</c>.</summary>
        public string PythonType { get; }

        /// <summary>The Python traceback as Python formats it ("" when the server sent none).</summary>
        public string PythonTraceback { get; }

        /// <summary>
        /// The .NET description of this exception, with the Python type before the message
        /// (<c>LessPy.PythonException: ValueError: ...</c>), followed by the Python traceback.
        /// </summary>
        public override string ToString()
        {
            string s = base.ToString();
            string name = GetType().FullName;
            string head = Message.Length > 0 ? name + ": " + Message : name;
            if (PythonType.Length > 0 && s.StartsWith(head, StringComparison.Ordinal))
                s = name + ": " + PythonType + (Message.Length > 0 ? ": " + Message : "") + s.Substring(head.Length);
            if (PythonTraceback.Length == 0) return s;
            return s + Environment.NewLine + "--- Python traceback ---" + Environment.NewLine + PythonTraceback;
        }
    }
}
