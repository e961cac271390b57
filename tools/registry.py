"""A registry of tools a model can call, and the sessions that run one trajectory's calls.

A `ToolRegistry` holds tools; each is an OpenAI spec (`{"type": "function", "function": {name, description,
parameters}}`), a `group` that says which tools go together, and optionally an implementation. A trajectory
runs its calls through its own `ToolSession`, which holds the mutable state (files, inventory, cart) so two
trajectories never see each other's writes and the same calls always give the same results.

    registry = builtin_registry()                               # tools/builtin_tools.py
    tools = registry.sample(random.Random(seed), 3)             # e.g. write_file, read_file, list_files
    session = registry.session([tool.name for tool in tools])
    result = session.execute({"name": "write_file", "arguments": '{"path": "a.txt", "content": "hi"}'})

`execute` never raises for a bad call or a failing tool: it returns `ok=False` with a sentence the model can
act on.
"""

from __future__ import annotations

import copy
import difflib
import json
import random
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from synthgraph.tools.tool_calls import ToolResult, as_openai_spec, exception_message, parse_call, validate_call

__all__ = ["Tool", "ToolRegistry", "ToolSession"]


class Tool(BaseModel):
    """One tool: its OpenAI spec, the group it combines with, and (optionally) what runs it.

    A stateful implementation is called as `impl(state, **arguments)` with its session's state dict; a
    stateless one as `impl(**arguments)`. Either returns something JSON-serialisable, or raises with a message
    meant for the model.
    """

    model_config = ConfigDict(frozen=True)

    spec: dict[str, Any]
    group: str = "general"
    impl: Callable[..., Any] | None = Field(default=None, exclude=True, repr=False)
    stateful: bool = False

    @property
    def name(self) -> str:
        return self.spec["function"]["name"]

    @property
    def description(self) -> str:
        return self.spec["function"].get("description", "")

    @property
    def parameters(self) -> dict[str, Any]:
        return self.spec["function"].get("parameters") or {"type": "object", "properties": {}}

    @property
    def executable(self) -> bool:
        return self.impl is not None


class ToolRegistry:
    """Named tools, in registration order (so sampling with a seeded rng is reproducible)."""

    def __init__(self) -> None:
        self._tools: dict[str, Tool] = {}

    def register(
        self,
        spec: dict[str, Any],
        impl: Callable[..., Any] | None = None,
        *,
        group: str = "general",
        stateful: bool = False,
        replace: bool = False,
    ) -> Tool:
        """Add a tool. `spec` is OpenAI's form, or the bare `{name, description, parameters}` inside it.

        Raises ValueError for a bad name, a parameters schema that is not valid JSON Schema, or a name already
        taken (unless `replace`).
        """
        spec = as_openai_spec(spec)
        name = spec["function"]["name"]
        if name in self._tools and not replace:
            raise ValueError(f"a tool named '{name}' is already registered (pass replace=True to override it)")
        tool = Tool(spec=spec, group=group, impl=impl, stateful=stateful)
        self._tools[name] = tool
        return tool

    def get(self, name: str) -> Tool:
        try:
            return self._tools[name]
        except KeyError:
            raise KeyError(_unknown_tool(name, self._tools)) from None

    def names(self) -> list[str]:
        return list(self._tools)

    def groups(self) -> dict[str, list[str]]:
        grouped: dict[str, list[str]] = {}
        for tool in self._tools.values():
            grouped.setdefault(tool.group, []).append(tool.name)
        return grouped

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __len__(self) -> int:
        return len(self._tools)

    def __iter__(self) -> Iterator[Tool]:
        return iter(self._tools.values())

    def specs(self, names: list[str] | None = None) -> list[dict[str, Any]]:
        """The OpenAI `tools` list for `names` (all tools when None); copies, so callers may edit them."""
        chosen = self._tools.values() if names is None else [self.get(name) for name in names]
        return [copy.deepcopy(tool.spec) for tool in chosen]

    def sample(
        self,
        rng: random.Random,
        n: int,
        *,
        groups: list[str] | None = None,
        executable_only: bool = False,
    ) -> list[Tool]:
        """`n` distinct tools, drawn group by group so that the tools offered together make sense together.

        A random group is used up (in random order) before the next one is started, so a small `n` gives tools
        of one group (write_file + read_file, not write_file + weekday) and a larger one adds neighbours.
        """
        pool = [tool for tool in self._tools.values()
                if (groups is None or tool.group in groups) and (tool.executable or not executable_only)]
        if not 0 < n <= len(pool):
            raise ValueError(f"cannot sample {n} distinct tools from the {len(pool)} eligible ones")
        by_group: dict[str, list[Tool]] = {}
        for tool in pool:
            by_group.setdefault(tool.group, []).append(tool)
        order = list(by_group)
        rng.shuffle(order)
        chosen: list[Tool] = []
        for group in order:
            members = list(by_group[group])
            rng.shuffle(members)
            chosen.extend(members[: n - len(chosen)])
            if len(chosen) == n:
                break
        return chosen

    def session(self, names: list[str] | None = None, state: dict[str, Any] | None = None) -> ToolSession:
        """A fresh session: calls may use `names` only (all tools when None), starting from a copy of `state`."""
        offered = None if names is None else [self.get(name).name for name in names]
        return ToolSession(self, offered, state)


class ToolSession:
    """The state of one trajectory's tools. Not thread-safe: one trajectory, one session."""

    def __init__(self, registry: ToolRegistry, names: list[str] | None = None,
                 state: dict[str, Any] | None = None) -> None:
        self.registry = registry
        self.names = names
        self.state: dict[str, Any] = copy.deepcopy(state) if state else {}

    def execute(self, call: dict[str, Any]) -> ToolResult:
        """Validate and run one call. Never raises for a bad call or a failing tool."""
        try:
            parsed = parse_call(call)
        except ValueError as error:
            return _failure("InvalidCall", str(error))
        offered = self.registry.names() if self.names is None else self.names
        if parsed.name not in offered:
            return _failure("UnknownTool", _unknown_tool(parsed.name, offered))
        tool = self.registry.get(parsed.name)
        if not tool.executable:
            return _failure("NotExecutable", f"'{tool.name}' has a spec but no implementation to run")
        problems = validate_call(parsed.model_dump(), tool.spec)
        if problems:
            return _failure("InvalidArguments", f"invalid call to '{tool.name}': " + "; ".join(problems))
        try:
            value = tool.impl(self.state, **parsed.arguments) if tool.stateful else tool.impl(**parsed.arguments)
            content = json.dumps(value, ensure_ascii=False, allow_nan=False)
        except Exception as error:  # the tool's failure is the model's observation, never the run's crash
            return _failure(type(error).__name__, exception_message(error))
        return ToolResult(ok=True, content=content)


def _failure(kind: str, message: str) -> ToolResult:
    return ToolResult(ok=False, content=message, error=f"{kind}: {message}")

def _unknown_tool(name: str, known: Iterable[str]) -> str:
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    return f"no tool named '{name}'{hint} (available: {', '.join(known) or 'none'})"
