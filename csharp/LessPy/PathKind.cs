namespace LessPy
{
    /// <summary>What a path names (<see cref="Posix.KindOf"/>).</summary>
    internal enum PathKind
    {
        None,
        File,
        Directory,
    }
}
