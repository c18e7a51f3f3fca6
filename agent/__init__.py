"""The node agent: joins a master over a WebSocket and reports its Docker Engine."""
