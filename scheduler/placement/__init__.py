"""Pure placement: filters, strategies and the affinity grammar (arrives with deploys)."""
