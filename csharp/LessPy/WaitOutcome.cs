namespace LessPy
{
    /// <summary>How waiting for a reply ended (<see cref="IFrameTransport.Wait"/>).</summary>
    internal enum WaitOutcome
    {
        Arrived,
        TimedOut,
        Cancelled,
        Closed,
    }
}
