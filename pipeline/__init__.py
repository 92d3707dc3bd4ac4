"""Video Refresher pipeline: actors and the pure core they share. Knows nothing of HTTP."""

__version__ = "0.1.0"
