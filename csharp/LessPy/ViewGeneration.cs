using System.Threading;

namespace LessPy
{
    /// <summary>Counts the uses of a lane's file: a view made at generation g is valid while the count is g.</summary>
    internal sealed class ViewGeneration
    {
        long _value;
        public long Value { get { return Volatile.Read(ref _value); } }
        public void Bump() { Interlocked.Increment(ref _value); }
    }
}
