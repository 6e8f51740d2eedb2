using System;

namespace LessPy
{
    /// <summary>A NumPy dtype of the wire protocol's table (PROTOCOL.md section 4).</summary>
    internal sealed class DType
    {
        public readonly byte Code;
        public readonly string Name;
        public readonly int ItemSize;
        public readonly Type ClrType;

        DType(byte code, string name, int size, Type clr)
        {
            Code = code; Name = name; ItemSize = size; ClrType = clr;
        }

        static readonly DType[] ByCode =
        {
            null,
            new DType(1, "bool", 1, typeof(bool)),
            new DType(2, "int8", 1, typeof(sbyte)),
            new DType(3, "uint8", 1, typeof(byte)),
            new DType(4, "int16", 2, typeof(short)),
            new DType(5, "uint16", 2, typeof(ushort)),
            new DType(6, "int32", 4, typeof(int)),
            new DType(7, "uint32", 4, typeof(uint)),
            new DType(8, "int64", 8, typeof(long)),
            new DType(9, "uint64", 8, typeof(ulong)),
            new DType(10, "float16", 2, null),
            new DType(11, "float32", 4, typeof(float)),
            new DType(12, "float64", 8, typeof(double)),
            new DType(13, "complex64", 8, null),
            new DType(14, "complex128", 16, null),
        };

        public static DType ForCode(byte code)
        {
            return code >= 1 && code < ByCode.Length ? ByCode[code] : null;
        }

        public static DType ForName(string name)
        {
            for (int i = 1; i < ByCode.Length; i++)
                if (ByCode[i].Name == name) return ByCode[i];
            return null;
        }

        public static DType ForClrType(Type t)
        {
            for (int i = 1; i < ByCode.Length; i++)
                if (ByCode[i].ClrType == t) return ByCode[i];
            return null;
        }
    }
}
