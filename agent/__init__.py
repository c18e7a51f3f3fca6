"""The node agent (arrives with node support)."""
