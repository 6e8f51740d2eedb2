using System.Collections.Generic;

namespace LessPy
{
    /// <summary>Reads and builds Dictionary&lt;string, T&gt; and its interfaces.</summary>
    internal abstract class DictAdapter
    {
        public abstract int Count(object dict);
        public abstract IEnumerable<KeyValuePair<string, object>> Pairs(object dict);
        public abstract object Create(int count);
        public abstract bool Add(object dict, string key, object value);
    }

    internal sealed class DictAdapter<T> : DictAdapter
    {
        public override int Count(object dict)
        {
            var r = dict as IReadOnlyCollection<KeyValuePair<string, T>>;
            return r != null ? r.Count : ((ICollection<KeyValuePair<string, T>>)dict).Count;
        }

        public override IEnumerable<KeyValuePair<string, object>> Pairs(object dict)
        {
            foreach (KeyValuePair<string, T> kv in (IEnumerable<KeyValuePair<string, T>>)dict)
                yield return new KeyValuePair<string, object>(kv.Key, kv.Value);
        }

        public override object Create(int count) { return new Dictionary<string, T>(count); }

        public override bool Add(object dict, string key, object value)
        {
            var d = (Dictionary<string, T>)dict;
            if (d.ContainsKey(key)) return false;
            d.Add(key, (T)value);
            return true;
        }
    }
}
