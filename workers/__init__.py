"""Dramatiq broker setup and the actors that execute every mutating action."""
