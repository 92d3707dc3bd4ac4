"""Delivering results: the ZIP's members and manifest (zipper) and its byte layout
(ziplayout, with ZIP64 and byte ranges)."""
