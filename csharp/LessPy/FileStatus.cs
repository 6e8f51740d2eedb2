using System;

namespace LessPy
{
    /// <summary>What statx says of a file: its type and permission bits, its owner and its size.</summary>
    internal struct FileStatus
    {
        public readonly int Mode;       // st_mode: type (S_IFMT) and permission bits
        public readonly uint Uid;
        public readonly long Size;

        public FileStatus(int mode, uint uid, long size)
        {
            Mode = mode;
            Uid = uid;
            Size = size;
        }

        public bool IsDirectory { get { return (Mode & 0xF000) == 0x4000; } }
        public bool IsRegular { get { return (Mode & 0xF000) == 0x8000; } }
        public bool IsLink { get { return (Mode & 0xF000) == 0xA000; } }
        /// <summary>The permission bits as chmod writes them (for example 0755).</summary>
        public string Permissions { get { return "0" + Convert.ToString(Mode & 0xFFF, 8); } }
    }
}
