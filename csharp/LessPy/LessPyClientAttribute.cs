using System;

namespace LessPy
{
    /// <summary>
    /// Names the class that implements a LessPy interface without run-time code generation (written by
    /// <c>lesspy stub MODULE.py --client</c>): <see cref="LessPythonInvoke.Initialize{T}"/> and
    /// <see cref="LessPythonInvoke.Connect{T}(string)"/> construct it instead of a <c>DispatchProxy</c>, so the
    /// interface works where nothing can be compiled at run time (Unity's IL2CPP, iOS, .NET NativeAOT, Mono full-AOT).
    /// </summary>
    [AttributeUsage(AttributeTargets.Interface, AllowMultiple = false, Inherited = false)]
    public sealed class LessPyClientAttribute : Attribute
    {
        /// <summary>Makes <paramref name="clientType"/> the implementation of the interface this attribute is on.</summary>
        /// <param name="clientType">A class deriving from <see cref="GeneratedClient"/> that implements the interface and has
        /// a public constructor taking a <see cref="PythonCalls"/>.</param>
        public LessPyClientAttribute(Type clientType)
        {
            if (clientType == null) throw new ArgumentNullException(nameof(clientType));
            ClientType = clientType;
        }

        /// <summary>The class that implements the interface.</summary>
        public Type ClientType { get; }
    }
}
