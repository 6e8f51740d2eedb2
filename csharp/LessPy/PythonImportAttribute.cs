using System;

namespace LessPy
{
    /// <summary>
    /// Marks an interface method as a call to the Python function of the same name, or of the name given.
    /// Every method of an interface given to <see cref="LessPythonInvoke"/> must carry it.
    /// </summary>
    /// <remarks>
    /// Time has Python's resolution: a <c>TimeSpan</c> or <c>DateTime</c> argument reaches Python in whole microseconds
    /// (the 100 ns ticks below one are dropped; a <c>TimeSpan</c> is truncated toward zero), so it may come back up to
    /// 9 ticks different from what was sent.
    /// </remarks>
    [AttributeUsage(AttributeTargets.Method, AllowMultiple = false, Inherited = false)]
    public sealed class PythonImportAttribute : Attribute
    {
        /// <summary>Binds the method to the Python function with the method's own name.</summary>
        public PythonImportAttribute() { }

        /// <summary>Binds the method to the Python function <paramref name="name"/>.</summary>
        /// <param name="name">The Python function's name (1 to 1024 bytes of UTF-8).</param>
        public PythonImportAttribute(string name)
        {
            if (name == null) throw new ArgumentNullException(nameof(name));
            if (name.Length == 0) throw new ArgumentException("the Python function name is empty", nameof(name));
            Name = name;
        }

        /// <summary>The Python function's name, or null to use the method's name.</summary>
        public string Name { get; }
    }
}
