using System;

namespace LessPy
{
    /// <summary>
    /// Base class of every error LessPy reports. Catch it to handle any failure of a call to Python.
    /// A server-side failure that fits no other category (error kind SERVER_ERROR) is reported as this type itself.
    /// </summary>
    public class LessPyException : Exception
    {
        internal LessPyException(string message) : base(message) { }
        internal LessPyException(string message, Exception inner) : base(message, inner) { }
    }
}
