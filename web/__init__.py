"""HTTP and WebSocket face of the service (Quart-Trio on Hypercorn)."""
