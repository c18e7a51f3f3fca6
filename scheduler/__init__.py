"""Placement (pure) and the periodic clock that sends jobs."""
