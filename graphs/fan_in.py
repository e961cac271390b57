"""Fan-in of Send branches: solver branches add keyed items, later nodes replace them with checked copies."""

from __future__ import annotations

from typing import Protocol, TypeVar


class Keyed(Protocol):
    key: str


Item = TypeVar("Item", bound=Keyed)


def merge_by_key(left: list[Item], right: list[Item]) -> list[Item]:
    """State reducer: new keys are appended, a known key's item is replaced in place. Order is arrival order;
    `to_rows` sorts by branch where the order of samples matters."""
    merged = {item.key: item for item in left}
    merged.update((item.key, item) for item in right)
    return list(merged.values())
