using System;

namespace LessPy
{
    /// <summary>The Python function raised an exception (error kind PYTHON_ERROR).</summary>
    public sealed class PythonException : LessPyException
    {
        internal PythonException(string pythonType, string message, string traceback)
            : base(string.IsNullOrEmpty(pythonType) ? message : pythonType + ": " + message)
        {
            PythonType = pythonType ?? "";
            PythonTraceback = traceback ?? "";
        }

        /// <summary>The Python exception's type name, for example <c>ValueError</c>.</summary>
        public string PythonType { get; }

        /// <summary>The Python traceback as Python formats it ("" when the server sent none).</summary>
        public string PythonTraceback { get; }

        /// <summary>The .NET description of this exception followed by the Python traceback.</summary>
        public override string ToString()
        {
            if (PythonTraceback.Length == 0) return base.ToString();
            return base.ToString() + Environment.NewLine + "--- Python traceback ---" + Environment.NewLine + PythonTraceback;
        }
    }
}
