"""Serve an ASGI app on 127.0.0.1 for tests over real HTTP (the simulators' own helper)."""

from connectors.simulator.serve import serving_in_background as serve

__all__ = ["serve"]
