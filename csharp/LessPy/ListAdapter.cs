using System.Collections.Generic;

namespace LessPy
{
    /// <summary>Reads and builds the lists of one element type without reflection per element.</summary>
    internal abstract class ListAdapter
    {
        public abstract int Count(object list);
        public abstract object Get(object list, int i);
        public abstract object Create(int count);
        public abstract void Set(object list, int i, object value);
    }

    /// <summary>T[] of a non-primitive T.</summary>
    internal sealed class ArrayAdapter<T> : ListAdapter
    {
        public override int Count(object list) { return ((T[])list).Length; }
        public override object Get(object list, int i) { return ((T[])list)[i]; }
        public override object Create(int count) { return new T[count]; }
        public override void Set(object list, int i, object value) { ((T[])list)[i] = (T)value; }
    }

    /// <summary>List&lt;T&gt; and the list interfaces (a decoded one is a List&lt;T&gt;).</summary>
    internal sealed class GenericListAdapter<T> : ListAdapter
    {
        public override int Count(object list)
        {
            var r = list as IReadOnlyCollection<T>;
            return r != null ? r.Count : ((ICollection<T>)list).Count;
        }

        public override object Get(object list, int i)
        {
            var r = list as IReadOnlyList<T>;
            return r != null ? r[i] : ((IList<T>)list)[i];
        }

        public override object Create(int count) { return new List<T>(count); }

        public override void Set(object list, int i, object value) { ((List<T>)list).Add((T)value); }
    }
}
