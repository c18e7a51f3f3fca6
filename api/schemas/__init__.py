"""msgspec Structs for request bodies and response shapes, one module per resource."""
