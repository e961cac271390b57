"""The tool-use recipe's roles: proposer, solver (the assistant), critic. Prompt + call + parsing; no graph logic.

Small models rarely emit native tool calls (neither Qwen2.5-Coder-0.5B nor SmolLM2 called a tool with automatic
tool choice), but they follow a JSON grammar. So the solver decides through structured output held to a grammar
built from the tools on offer: either `call_tools` with calls whose names and arguments match those tools'
schemas, or `answer`. The graph turns each decision into the standard OpenAI `tool_calls` form.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from pydantic import BaseModel, Field, model_validator

from synthgraph.agents.models import ModelClient, Sampling, parse_hermes_tool_calls
from synthgraph.agents.prompting import DEFAULT_PROMPTS, Prompts

RequestKind = Literal["single", "parallel", "multi_step", "no_tool"]

KIND_INSTRUCTIONS: dict[str, str] = {
    "single": "It needs exactly one call of one of these tools.",
    "parallel": "It needs two or more calls that do not depend on each other (the same tool with different values, "
                "or different tools), all of whose values are stated in the request.",
    "multi_step": "It needs two or more calls where a later call uses the result of an earlier one (for example, "
                  "look something up, then compute or store something with what was found).",
    "no_tool": "None of these tools can help with it: a general-knowledge question, advice, or small talk that "
               "the assistant should answer directly, without calling any tool.",
}


# One example per kind, about tools the registry does not have, so the proposer copies the voice, not the content.
KIND_EXAMPLES: dict[str, str] = {
    "single": "I fly out on 2026-05-03 and stay 12 nights. On which date do I fly back?",
    "parallel": "What is the weather today in Oslo, in Lisbon and in Athens?",
    "multi_step": "Find my last invoice to Acme Ltd and email its total to anna@example.com.",
    "no_tool": "Why do onions make people cry when they cut them?",
}


TOPIC_LINE = "Scenario: {topic}"
ENVIRONMENT_LINE = ("What the user's tools hold right now (refer to these when you need something that exists): "
                    "{environment}")
NO_TOOLS_SHOWN = "(not relevant to this message)"
RESULTS_HEADER = "Tool results:\n"
# Prompt text filled in beside the templates: part of the run id like the templates.
PROMPT_TEXT = {"kind_instructions": KIND_INSTRUCTIONS, "kind_examples": KIND_EXAMPLES, "topic_line": TOPIC_LINE,
               "environment_line": ENVIRONMENT_LINE, "no_tools_shown": NO_TOOLS_SHOWN, "results_header": RESULTS_HEADER}


class UserRequest(BaseModel):
    request: str = Field(min_length=15, max_length=800)


class RequestedCall(BaseModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)


class Decision(BaseModel):
    """One solver step: call these tools, or answer the user."""

    action: Literal["call_tools", "answer"]
    calls: list[RequestedCall] = Field(default_factory=list)
    content: str | None = None

    @model_validator(mode="after")
    def _complete(self):
        if self.action == "call_tools" and not self.calls:
            raise ValueError("call_tools needs at least one call")
        if self.action == "answer" and not (self.content or "").strip():
            raise ValueError("answer needs non-empty content")
        return self


class ToolJudgement(BaseModel):
    reason: str = Field(max_length=600)
    satisfied: bool
    score: int = Field(ge=0, le=10)


def decision_schema(tools: list[dict[str, Any]], *, max_calls: int, constrain_arguments: bool = True) -> dict:
    """The grammar a solver step is held to: `answer`, or `call_tools` with 1..max_calls calls of the offered tools.

    With `constrain_arguments`, each call's arguments must match that tool's parameter schema (the grammar then
    cannot emit a call that fails the format check; useful for weak models). Without it only the tool names
    are held, which lets the format check catch what the model gets wrong.
    """
    call_forms = []
    for tool in tools:
        function = tool["function"]
        parameters = function.get("parameters") or {"type": "object", "properties": {}}
        if constrain_arguments:
            arguments = {**parameters, "type": "object", "additionalProperties": False}
        else:
            arguments = {"type": "object"}
        call_forms.append({"type": "object", "properties": {"name": {"const": function["name"]}, "arguments": arguments},
                           "required": ["name", "arguments"], "additionalProperties": False})
    call_tools = {"type": "object",
                  "properties": {"action": {"const": "call_tools"},
                                 "calls": {"type": "array", "minItems": 1, "maxItems": max_calls,
                                           "items": {"anyOf": call_forms}}},
                  "required": ["action", "calls"], "additionalProperties": False}
    answer = {"type": "object",
              "properties": {"action": {"const": "answer"}, "content": {"type": "string", "minLength": 1}},
              "required": ["action", "content"], "additionalProperties": False}
    return {"anyOf": [call_tools, answer] if tools else [answer]}


def describe_tools(tools: list[dict[str, Any]]) -> str:
    """One line per tool: name, description, parameters (as JSON schema, compact)."""
    lines = []
    for tool in tools:
        function = tool["function"]
        parameters = json.dumps(function.get("parameters", {}), separators=(",", ":"), ensure_ascii=False)
        lines.append(f"- {function['name']}: {function.get('description', '').strip()} Parameters: {parameters}")
    return "\n".join(lines)


_ASSISTANT_VOICE = re.compile(
    r"^\s*(you |this (assistant|tool)|the (assistant|tool)|please (provide|enter|select)|as an ai)", re.I)


def names_tools(request: str, tools: list[dict[str, Any]]) -> str | None:
    """A request must read like a user's, and be new: one in the assistant's voice ("Please provide the
    value..."), one that spells out a tool's identifier (users do not know them) or a near copy of a prompt
    example or a tool's description is refused, then retried."""
    if _ASSISTANT_VOICE.search(request):
        return "the request is written in the assistant's voice, not the user's"
    for example in KIND_EXAMPLES.values():
        if difflib.SequenceMatcher(None, request.lower(), example.lower()).ratio() > 0.6:
            return "the request copies the prompt's example"
    for tool in tools:
        description = tool["function"].get("description", "").strip().lower()
        if len(description) >= 20 and (description[:40] in request.lower() or difflib.SequenceMatcher(
                None, request.lower(), description).ratio() > 0.6):
            return "the request copies a tool's description"
        name = tool["function"]["name"]
        if ("_" in name or "." in name) and re.search(rf"\b{re.escape(name)}\b", request):
            return f"the request names the tool {name!r}; a user would not"
    return None


@dataclass
class ToolUseProposer:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def write_request(self, tools: list[dict[str, Any]], kind: RequestKind, topic: str | None = None,
                            environment: dict[str, Any] | None = None) -> str:
        # A request that needs no tool is written without the tools in view: shown them, small models write
        # requests for them anyway.
        shown = [] if kind == "no_tool" else tools
        tool_list = "\n".join(f"- {t['function']['name']}: {t['function'].get('description', '').strip()}"
                              for t in shown) or NO_TOOLS_SHOWN

        def realistic(text: str) -> str | None:  # runs only on output that parsed
            return names_tools(UserRequest.model_validate_json(text).request, tools)

        completion = await self.client.complete(
            self.prompts.render("tool_use_proposer", tool_list=tool_list, kind_instruction=KIND_INSTRUCTIONS[kind],
                   examples=f"- {KIND_EXAMPLES[kind]}",
                   topic_line=TOPIC_LINE.format(topic=topic) if topic else "",
                   environment_line=(ENVIRONMENT_LINE.format(environment=json.dumps(environment, ensure_ascii=False))
                                     if environment and shown else "")),
            role="proposer", sampling=self.sampling, schema=UserRequest, check=realistic,
        )
        return completion.parsed.request.strip()


class CallResult(BaseModel):
    """What one earlier call returned, as the solver is shown it."""

    id: str
    name: str
    arguments: dict[str, Any]
    content: str


Step = tuple[Decision, list[CallResult]]


@dataclass
class ToolUseSolver:
    """The assistant. `structured` (default): each step is JSON held to a grammar of the offered tools, which
    works with any model. `native`: the model's own tool calling — its chat template renders the tools, calls
    and results, and its Hermes-format calls are parsed (in process) or read from the server's `tool_calls`
    (a vLLM server needs `--enable-auto-tool-choice --tool-call-parser hermes` for Qwen-family models)."""

    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS
    max_calls_per_step: int = 4
    constrain_arguments: bool = True
    mode: Literal["structured", "native"] = "structured"

    def prompt(self, request: str, tools: list[dict[str, Any]], steps: list[Step]) -> list[BaseMessage]:
        """The conversation so far, as this model sees it. Structured: its own decisions as JSON and the results
        as a user turn (chat templates differ in whether and how they render tool turns; this works with any).
        Native: assistant `tool_calls` and `tool` turns, rendered by the model's template."""
        if self.mode == "native":
            messages = self.prompts.render("tool_use_native", request=request)
            for decision, results in steps:
                messages.append(AIMessage(content="", tool_calls=[
                    {"name": r.name, "args": r.arguments, "id": r.id} for r in results]))
                messages.extend(ToolMessage(content=r.content, tool_call_id=r.id, name=r.name) for r in results)
            return messages
        messages = self.prompts.render("tool_use_solver", tools=describe_tools(tools) or "(none)", request=request)
        for decision, results in steps:
            messages.append(AIMessage(content=decision.model_dump_json(exclude_none=True, exclude_defaults=True)))
            messages.append(HumanMessage(content=RESULTS_HEADER + "\n".join(
                f"{r.name} (id {r.id}): {r.content}" for r in results)))
        return messages

    async def step(self, request: str, tools: list[dict[str, Any]], steps: list[Step], *,
                   final: bool = False, subject: str | None = None) -> Decision:
        """The next decision. On the `final` step only an answer is allowed, so a trajectory always ends."""
        messages = self.prompt(request, tools, steps)
        if self.mode == "native":
            names = [t["function"]["name"] for t in tools]

            def answers(text: str) -> str | None:  # runs on replies without calls, i.e. answers
                if "<tool_call>" in text or parse_hermes_tool_calls(text, names)[1]:
                    return "the last step must answer the user, not call another tool"
                return None

            completion = await self.client.complete(messages, role="solver", sampling=self.sampling,
                                                    tools=None if final else tools, check=answers, subject=subject)
            if completion.tool_calls:
                return Decision(action="call_tools", calls=[
                    RequestedCall(name=c["name"], arguments=c["args"]) for c in completion.tool_calls])
            return Decision(action="answer", content=completion.text)
        grammar = decision_schema([] if final else tools, max_calls=self.max_calls_per_step,
                                  constrain_arguments=self.constrain_arguments)
        completion = await self.client.complete(
            messages, role="solver", sampling=self.sampling, schema=Decision, json_schema=grammar, subject=subject,
        )
        return completion.parsed


@dataclass
class ToolUseCritic:
    client: ModelClient
    sampling: Sampling
    prompts: Prompts = DEFAULT_PROMPTS

    async def judge(self, *, request: str, transcript: str, subject: str | None = None) -> ToolJudgement:
        completion = await self.client.complete(
            self.prompts.render("tool_use_critic", request=request, transcript=transcript),
            role="critic", sampling=self.sampling, schema=ToolJudgement, subject=subject,
        )
        return completion.parsed
