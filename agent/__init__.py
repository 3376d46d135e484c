"""Corral host agent: the small process on each server that dials out to the broker.

It runs terminals and exec commands for users on this host and reports system facts. It
uses the standard library only (its WebSocket client is the sans-I/O ``agent.wsframe``),
runs on Python 3.9+, and never imports broker code: the product promises < 20 MB RSS.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
