namespace LessPy
{
    /// <summary>What a connection is for, sent in the client's answer (section 3).</summary>
    internal enum Purpose : ushort
    {
        OpenLane = 0,
        Status = 1,
        Stop = 2,
        Frames = 3,     // frames as messages on the connection: the Jupyter Server relay's lanes (never opened here)
        WebSocket = 4,  // as Frames, then the relay hands the websocket's TCP connection to the session (never opened here)
    }
}
