using System;
using System.Collections.Generic;
using System.Reflection;
using System.Runtime.ExceptionServices;
using System.Threading;

namespace LessPy
{
    /// <summary>
    /// Binds an interface and generates its proxy type on another thread while the caller connects or starts Python:
    /// reflection and DispatchProxy's code generation take a fresh process about as long as the connection, and a
    /// machine has a second core for one of them. Meanwhile the caller compiles the codec
    /// (<see cref="WarmCodec"/>).
    /// </summary>
    internal sealed class Preparation<T> where T : class
    {
        readonly Thread _thread;
        readonly ManualResetEventSlim _bound = new ManualResetEventSlim();
        Dictionary<MethodInfo, MethodBinding> _bindings;
        ExceptionDispatchInfo _error;

        Preparation()
        {
            _thread = new Thread(Run);
            _thread.IsBackground = true;
        }

        /// <summary>Starts binding <typeparamref name="T"/>.</summary>
        public static Preparation<T> Start()
        {
            var p = new Preparation<T>();
            p._thread.Start();
            return p;
        }

        void Run()
        {
            // named here, not by the caller: a type's first Name costs Mono a reflection set-up, paid on this thread
            Thread.CurrentThread.Name = "LessPy binds " + typeof(T).Name;
            try
            {
                _bindings = MethodBinding.BindAll(typeof(T));
                LessPyProxy.Prepare<T>();
            }
            catch (Exception e)
            {
                _error = ExceptionDispatchInfo.Capture(e);
                return;
            }
            finally
            {
                _bound.Set();
            }
        }

        /// <summary>
        /// Encodes a small call and decodes a small reply into scratch memory, so that the codec's large methods are
        /// compiled (JIT) before the first call. The caller does it right after <see cref="Start"/>, before connecting:
        /// then it never runs beside the first call (the binding thread finishes last), and it overlaps the binding.
        /// Never fails.
        /// </summary>
        public static void WarmCodec()
        {
            try
            {
                Type unsupported;
                WireType i32 = WireType.For(typeof(int), false, out unsupported);
                WireType f64 = WireType.For(typeof(double), false, out unsupported);
                var args = new object[] { 1, 2.5 };
                var types = new[] { i32, f64 };
                byte[] name = { (byte)'w' };
                byte[] descriptor = { (byte)Tag.Int32 };
                var buf = new byte[(int)Codec.MeasureCall(name, descriptor, args, types)];
                Codec.WriteCall(new Span<byte>(buf), name, descriptor, args, types);
                byte[] reply = { (byte)Tag.Int32, 42, 0, 0, 0 };
                int pos = 0;
                WireType actual;
                Codec.Read(new ReadOnlyMemory<byte>(reply), new ReadOnlySpan<byte>(reply), ref pos, i32, out actual);
            }
            catch (Exception) { }           // only a head start: the first call compiles whatever is left
        }

        /// <summary>Waits for the bindings; rethrows what binding threw (a method the interface cannot bind).</summary>
        /// <exception cref="NotSupportedException">A method of <typeparamref name="T"/> lacks [PythonImport] or uses an unsupported type.</exception>
        public Dictionary<MethodInfo, MethodBinding> Finish()
        {
            _bound.Wait();
            if (_error != null) _error.Throw();
            return _bindings;
        }
    }
}
