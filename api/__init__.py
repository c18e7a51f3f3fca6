"""The Litestar HTTP API: thin controllers that parse, authorize, call core and render."""
