"""The affinity grammar: `key==value`, `key!=value`, soft `key==~value`, `/regex/` values."""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from functools import lru_cache

KEYS = ("node", "label", "service", "container")

# Kontena's grammar: the key is greedy, so a rule splits at its LAST `==`/`!=`
# (`label==az=eu-1` is key `label`, value `az=eu-1`); a `~` right after the operator is the
# soft flag.
_RULE = re.compile(r"(.+)(==|!=)(~)?(.+)", re.DOTALL)
# The instance-number directives of Ruby's `format` that rules use; `%%` is a literal percent.
_DIRECTIVE = re.compile(r"%(.?)", re.DOTALL)


class AffinityError(ValueError):
    """A rule that cannot be parsed; the message names the rule."""

    def __init__(self, rule: str, why: str) -> None:
        super().__init__(f"Invalid affinity filter: {rule} ({why})")
        self.rule = rule


@dataclass(frozen=True)
class Rule:
    """One parsed rule, with its instance number already substituted."""

    text: str
    key: str
    negate: bool  # `!=`: keep the nodes that do NOT match
    soft: bool  # `~`: when no node is left, ignore the rule instead of failing
    value: str
    pattern: re.Pattern[str] | None = None  # set for `/regex/` values

    def matches(self, values: Collection[str]) -> bool:
        """True when any of the node's values for this key equals (or matches) the value."""
        if self.pattern is not None:
            search = self.pattern.search
            return any(search(v) for v in values)
        return self.value in values

    def keeps(self, values: Collection[str]) -> bool:
        """True when a node with these values for the key passes the rule."""
        return self.matches(values) != self.negate


def expand(rule: str, instance_number: int) -> str:
    """Substitute the instance number for ``%s``/``%i``/``%d``; ``%%`` is a literal ``%``."""
    if "%" not in rule:
        return rule

    def substitute(match: re.Match[str]) -> str:
        directive = match.group(1)
        if directive in ("s", "i", "d"):
            return str(instance_number)
        if directive == "%":
            return "%"
        raise AffinityError(rule, f"malformed '%{directive}': use %s for the instance number")

    return _DIRECTIVE.sub(substitute, rule)


@lru_cache(maxsize=4096)
def parse_rule(text: str) -> Rule:
    """Parse one rule (already expanded); raises AffinityError naming it."""
    match = _RULE.fullmatch(text)
    if match is None:
        raise AffinityError(text, "expected key==value or key!=value")
    key, operator, soft, value = match.groups()
    if key not in KEYS:
        raise AffinityError(text, f"unknown key '{key}', use one of {', '.join(KEYS)}")
    pattern = None
    if len(value) >= 2 and value.startswith("/") and value.endswith("/"):
        try:
            pattern = re.compile(value[1:-1])
        except re.error as exc:
            raise AffinityError(text, f"bad regular expression: {exc}") from None
    return Rule(text, key, operator == "!=", soft is not None, value, pattern)


def rules_for(instance_number: int, rules: Iterable[str]) -> list[Rule]:
    """The rules of one instance: each expanded with its number, then parsed."""
    return [parse_rule(expand(rule, instance_number)) for rule in rules]


def validate(rules: Iterable[str]) -> list[str]:
    """Error messages for the rules that can never parse (for the service API), in order."""
    errors = []
    for rule in rules:
        try:
            rules_for(1, [rule])
        except AffinityError as exc:
            errors.append(str(exc))
    return errors
