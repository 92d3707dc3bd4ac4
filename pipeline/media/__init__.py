"""The media core: seeded effects and filter graphs (pure), FFmpeg command building (pure),
and the FFmpeg/PyAV edges (probe, verify, child processes, distinctness sampling)."""
