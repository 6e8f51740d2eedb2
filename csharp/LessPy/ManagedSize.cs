using System;
using System.Runtime.InteropServices;

namespace LessPy
{
    /// <summary>The size of T as a span element (Marshal.SizeOf says 4 for bool: the marshalled size).</summary>
    internal static class ManagedSize<T> where T : struct
    {
        public static readonly int Value = MemoryMarshal.AsBytes(new Span<T>(new T[1])).Length;
    }
}
