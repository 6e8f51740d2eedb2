using System;
using System.Buffers;
using System.Runtime.InteropServices;

namespace LessPy
{
    /// <summary>Exposes a T[] as bytes without copying it; pins it on demand.</summary>
    internal sealed class ArrayMemoryManager<T> : MemoryManager<byte> where T : struct
    {
        readonly T[] _array;

        public ArrayMemoryManager(T[] array) { _array = array; }

        public override Span<byte> GetSpan()
        {
            return MemoryMarshal.AsBytes(new Span<T>(_array));
        }

        public override unsafe MemoryHandle Pin(int elementIndex = 0)
        {
            GCHandle h = GCHandle.Alloc(_array, GCHandleType.Pinned);
            byte* p = (byte*)h.AddrOfPinnedObject() + elementIndex;
            return new MemoryHandle(p, h);
        }

        public override void Unpin() { }

        protected override void Dispose(bool disposing) { }
    }
}
