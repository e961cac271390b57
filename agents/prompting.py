"""Prompt templates: the shipped ones (agents/prompts/NAME.md) and a recipe's overrides of them.

A template has a system and a user part, filled with `str.format` fields (literal braces are doubled). A recipe
overrides any of its family's templates under `prompts:` — inline parts or a file in the same `## system` /
`## user` form — and the override is checked when the recipe loads: it may use only the fields the role fills,
and must use every field that carries the task (those not named `*_block`, which are optional context).
"""

from __future__ import annotations

import string
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from importlib import resources
from pathlib import Path

from langchain_core.messages import BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, model_validator


class PromptOverride(BaseModel):
    """A recipe's replacement for one template: a file, or either part inline (the other part stays shipped)."""

    model_config = ConfigDict(extra="forbid")

    file: Path | None = Field(None, description="a .md with '## system' and '## user' sections; relative to the recipe")
    system: str | None = None
    user: str | None = None

    @model_validator(mode="after")
    def _file_or_parts(self):
        if self.file is not None and (self.system is not None or self.user is not None):
            raise ValueError("give either `file` or inline `system` / `user` parts, not both")
        if self.file is None and self.system is None and self.user is None:
            raise ValueError("give a `file` or at least one of `system`, `user`")
        return self


class RenderedPrompt(list[BaseMessage]):
    """The messages of a filled template, still knowing which template they came from: the model call path
    passes the name on to the chat model (lineage, and test fakes that answer per prompt)."""

    def __init__(self, name: str, messages: Iterable[BaseMessage]):
        super().__init__(messages)
        self.name = name


def split_sections(text: str, where: str) -> tuple[str, str]:
    _, _, rest = text.partition("## system\n")
    system, _, user = rest.partition("## user\n")
    if not system.strip() or not user.strip():
        raise ValueError(f"{where} needs a '## system' and a '## user' section")
    return system.strip(), user.strip()


@cache
def shipped_template(name: str) -> tuple[str, str]:
    """(system, user) of agents/prompts/NAME.md."""
    text = resources.files("synthgraph.agents").joinpath("prompts", f"{name}.md").read_text()
    return split_sections(text, f"prompt {name}.md")


def template_fields(text: str) -> set[str]:
    return {field.split(".")[0].split("[")[0] for _, field, _, _ in string.Formatter().parse(text) if field}


class Prompts:
    """The templates a family's roles render, after the recipe's overrides."""

    def __init__(self, templates: Mapping[str, tuple[str, str]] | None = None):
        self._templates = dict(templates or {})

    @classmethod
    def for_family(cls, family: str, names: Iterable[str], overrides: Mapping[str, PromptOverride],
                   *, base: Callable[[Path], Path] = lambda p: p) -> Prompts:
        """Shipped templates `names` (each `FAMILY_KEY`), with `overrides` keyed by KEY; raises ValueError naming
        `prompts.KEY...` for an unknown key, an unreadable file, or fields the role does not fill or needs."""
        keys = {name.removeprefix(f"{family}_"): name for name in names}
        templates = {name: shipped_template(name) for name in names}
        for key, override in overrides.items():
            if key not in keys:
                raise ValueError(f"prompts.{key}: the {family} family has no such prompt "
                                 f"(its prompts: {', '.join(sorted(keys)) or 'none'})")
            name = keys[key]
            system, user = templates[name]
            if override.file is not None:
                path = base(override.file)
                try:
                    system, user = split_sections(path.read_text(), f"prompts.{key}.file {path}")
                except OSError as exc:
                    raise ValueError(f"prompts.{key}.file: cannot read {path} ({exc.strerror})") from None
            system = override.system if override.system is not None else system
            user = override.user if override.user is not None else user
            check_fields(f"prompts.{key}", (system, user), shipped_template(name))
            templates[name] = (system, user)
        return cls(templates)

    def template(self, name: str) -> tuple[str, str]:
        return self._templates.get(name) or shipped_template(name)

    def render(self, name: str, **fields: str) -> RenderedPrompt:
        system, user = self.template(name)
        return RenderedPrompt(name, [SystemMessage(content=system.format(**fields)),
                                     HumanMessage(content=user.format(**fields))])

    def texts(self) -> dict[str, tuple[str, str]]:
        return dict(sorted(self._templates.items()))


def check_fields(where: str, parts: tuple[str, str], shipped: tuple[str, str]) -> None:
    offered = template_fields("\n".join(shipped))
    used = set()
    for label, part in zip(("system", "user"), parts):
        try:
            fields = template_fields(part)
        except ValueError as exc:  # an unmatched brace
            raise ValueError(f"{where}.{label}: {exc} (write a literal brace as {{{{ or }}}})") from None
        unknown = sorted(fields - offered)
        if unknown:
            raise ValueError(f"{where}.{label}: unknown field {{{unknown[0]}}}; this prompt is filled with "
                             f"{', '.join('{' + f + '}' for f in sorted(offered))}")
        used |= fields
    missing = sorted(f for f in offered - used if not f.endswith("_block"))
    if missing:
        raise ValueError(f"{where}: must use {', '.join('{' + f + '}' for f in missing)} "
                         "(the task the role is given)")


DEFAULT_PROMPTS = Prompts()
