"""The paper's experiments as protocols (Tables 2-4, Figs 1, 2a, 2b, 9): protocol data files, a
resumable runner, statistics and reports. A layer above evaluation: nothing below imports it."""
from .protocol import Protocol, ProtocolError, load_protocol, protocol_names

__all__ = ["Protocol", "ProtocolError", "load_protocol", "protocol_names"]
