"""How frames travel between a client and the server: the Transport interface (base.py) and today's
implementation, memory-mapped lane files with a notify socket (mapping.py, mapped_lane.py, spinner.py,
handshake.py)."""
