"""What the decoder raises for a frame that does not follow docs/PROTOCOL.md."""

from __future__ import annotations


class FrameError(ValueError):
    """A frame that does not follow docs/PROTOCOL.md: says where and what was expected."""

    def __init__(self, offset: int, what: str) -> None:
        super().__init__(f"malformed frame at byte {offset}: {what}")
        self.offset = offset
        self.what = what


class TextError(FrameError):
    """A string in a request that is not UTF-8 because it carries a lone UTF-16 surrogate: the client's string
    was broken, not the client's idea of the protocol."""
