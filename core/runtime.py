"""Everything a process role needs at hand: settings, database, vault, job sender."""

from __future__ import annotations

from dataclasses import dataclass

from core.config import Settings
from core.jobs import JobSender
from core.rate_limit import RateLimiter
from core.vault import Vault
from models.db import Database

VERSION = "1.5.2"


@dataclass
class Runtime:
    """Process-wide services, built once by the command that starts the role."""

    settings: Settings
    db: Database
    vault: Vault
    sender: JobSender
    rate_limiter: RateLimiter
