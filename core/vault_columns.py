"""Every database column that holds vault ciphertext, so ``vault rotate`` misses none.

A later resource that stores vault values (ACME account keys, certificate private keys…) adds
one :class:`VaultColumn` to :data:`VAULT_COLUMNS` below (or calls :func:`register` at import),
naming its table, key and value columns and how to rebuild the encryption context of a row.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeAlias

from sqlalchemy import ColumnElement, Select, Table, select, true
from sqlalchemy.engine import RowMapping

from core import grids, nodes
from models import AcmeAccount, Certificate, ConfigEntry, Grid, GridSecret, Node, Registry

ContextOf = Callable[[RowMapping], str]
# Rows of any shape: each column's query picks the columns its context needs.
AnySelect: TypeAlias = Select[*tuple[Any, ...]]


@dataclass(frozen=True)
class VaultColumn:
    """One column of vault values and how to read the context each row was encrypted with.

    ``query`` selects the key column as ``id``, the value column as ``value`` and whatever the
    context needs; :mod:`core.vault_rotate` adds paging and skips NULL values itself.
    """

    label: str
    table: Table
    id_column: str
    value_column: str
    context: ContextOf
    # Extra columns (often from a join) the context needs, labelled as ``context`` reads them.
    query: Callable[[], AnySelect] | None = None
    where: Callable[[], ColumnElement[bool]] = field(default=lambda: true())

    def select(self) -> AnySelect:
        """The rows to visit: id, value and context columns, NULL values left out."""
        id_col, value_col = self.table.c[self.id_column], self.table.c[self.value_column]
        base = (
            self.query()
            if self.query is not None
            else select(id_col.label("id"), value_col.label("value"))
        )
        return base.where(value_col.is_not(None), self.where())


def _grid_token() -> VaultColumn:
    table = _table(Grid)
    return VaultColumn(
        label="grid tokens",
        table=table,
        id_column="id",
        value_column="token_encrypted",
        query=lambda: select(
            Grid.id.label("id"), Grid.token_encrypted.label("value"), Grid.name.label("grid")
        ),
        context=lambda row: grids.token_context(row["grid"]),
    )


def _table(model: type[Any]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


def _named_in_grid(
    label: str, model: Any, value_column: str, context: Callable[[str, str], str]
) -> VaultColumn:
    """A value of a row named within its grid (node tokens, secrets, registry passwords)."""
    value = getattr(model, value_column)
    return VaultColumn(
        label=label,
        table=_table(model),
        id_column="id",
        value_column=value_column,
        query=lambda: select(
            model.id.label("id"),
            value.label("value"),
            model.name.label("name"),
            Grid.name.label("grid"),
        ).join(Grid, Grid.id == model.grid_id),
        context=lambda row: context(row["grid"], row["name"]),
    )


def _config_secret() -> VaultColumn:
    table = _table(ConfigEntry)
    # Covers every `*_secret` value and the `server.salt` canary the start-up check opens.
    return VaultColumn(
        label="config values",
        table=table,
        id_column="key",
        value_column="value",
        context=lambda row: f"config:{row['id']}",
        where=lambda: ConfigEntry.encrypted.is_(True),
    )


def _acme_account_key() -> VaultColumn:
    table = _table(AcmeAccount)
    return VaultColumn(
        label="acme account keys",
        table=table,
        id_column="id",
        value_column="key_encrypted",
        query=lambda: select(
            AcmeAccount.id.label("id"),
            AcmeAccount.key_encrypted.label("value"),
            AcmeAccount.grid_id.label("grid_id"),
        ),
        context=lambda row: acme_account_context(row["grid_id"]),
    )


def _certificate_key() -> VaultColumn:
    table = _table(Certificate)
    return VaultColumn(
        label="certificate keys",
        table=table,
        id_column="id",
        value_column="key_encrypted",
        query=lambda: select(
            Certificate.id.label("id"),
            Certificate.key_encrypted.label("value"),
            Certificate.grid_id.label("grid_id"),
            Certificate.subject.label("subject"),
        ),
        context=lambda row: certificate_context(row["grid_id"], row["subject"]),
    )


def acme_account_context(grid_id: str) -> str:
    """The vault context binding an ACME account key to its grid."""
    return f"acme-account:{grid_id}"


def certificate_context(grid_id: str, subject: str) -> str:
    """The vault context binding a certificate's private key to its grid and subject."""
    return f"certificate:{grid_id}/{subject}"


def secret_context(grid_name: str, name: str) -> str:
    """The vault context binding a secret value to its grid and name."""
    return f"secret:{grid_name}/{name}"


def registry_context(grid_name: str, name: str) -> str:
    """The vault context binding a registry password to its grid and registry name."""
    return f"registry:{grid_name}/{name}"


VAULT_COLUMNS: list[VaultColumn] = [
    _grid_token(),
    _named_in_grid("node tokens", Node, "token_encrypted", nodes.token_context),
    _config_secret(),
    _named_in_grid("secrets", GridSecret, "value_encrypted", secret_context),
    _named_in_grid("registry passwords", Registry, "password_encrypted", registry_context),
    _acme_account_key(),
    _certificate_key(),
]


def register(column: VaultColumn) -> None:
    """Add a column for ``vault rotate`` to visit (once, by label)."""
    if all(existing.label != column.label for existing in VAULT_COLUMNS):
        VAULT_COLUMNS.append(column)
