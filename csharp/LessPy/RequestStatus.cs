namespace LessPy
{
    /// <summary>What a request asks for (the request header's status, section 2 and "Streams").</summary>
    internal enum RequestStatus : uint
    {
        Call = 0,
        /// <summary>The next item of the lane's open stream (empty payload).</summary>
        Next = 1,
        /// <summary>Close the lane's open stream (empty payload).</summary>
        Close = 2,
        /// <summary>A call whose result is streamed item by item (IEnumerable&lt;T&gt;).</summary>
        Stream = 3,
    }
}
