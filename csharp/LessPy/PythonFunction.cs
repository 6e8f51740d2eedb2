namespace LessPy
{
    /// <summary>
    /// One Python function as a method of a LessPy interface binds it (its name, argument and result types), obtained
    /// once from <see cref="PythonCalls.Function"/> and passed to each call of <see cref="PythonCalls"/>.
    /// </summary>
    public sealed class PythonFunction
    {
        internal readonly MethodBinding Binding;

        internal PythonFunction(MethodBinding binding) { Binding = binding; }

        /// <summary>The Python function's name.</summary>
        public string PythonName { get { return Binding.PyName; } }

        /// <summary>How many arguments a call passes to Python (a trailing CancellationToken is not one).</summary>
        public int ArgumentCount { get { return Binding.ArgTypes.Length; } }

        /// <summary>The Python function's name.</summary>
        public override string ToString() { return Binding.PyName; }
    }
}
