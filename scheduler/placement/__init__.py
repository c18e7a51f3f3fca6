"""Pure placement: filters, strategies and the affinity grammar; no database, no I/O."""
