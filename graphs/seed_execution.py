"""Running one seed: its graph, then the rows and lineage it becomes. The one definition of "run a seed and build
its outcome", used by the local runner (graphs/runner.py) and by every Ray worker (graphs/ray_workers.py), so a
seed's rows and ids are the same wherever it ran.
"""

from __future__ import annotations

import traceback
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from synthgraph.agents.models import CallLog, CallRecord, ModelServerDown, current_call_log
from synthgraph.graphs.family import Family
from synthgraph.graphs.recipe import SeedBase
from synthgraph.store.rows import AgentCallRow, SampleRow, SeedOutcome, stable_id

if TYPE_CHECKING:
    from synthgraph.graphs.runner import SeedCheckpoints


_RECORDED_CALL_FIELDS = tuple(name for name in AgentCallRow.model_fields if name in CallRecord.model_fields)


class SeedAbandoned(Exception):
    """A seed failed after the run was told to stop (vLLM's engine shares the terminal's Ctrl-C and dies with
    it): the seed stays pending for the next run rather than being recorded as a crash."""


class SeedExecutor:
    """Runs seeds of one run through the family's graph with one context (the roles over one model pool).

    `stopping` says whether the run was interrupted (then a failing seed is abandoned, not recorded as a crash);
    `on_call` sees every model call as it is made; `on_resumed` is told of a seed picked up from a checkpoint.
    """

    def __init__(self, run_id: str, family: Family, graph, context: Any, *,
                 checkpoints: SeedCheckpoints | None = None,
                 unchecked_graph=None, checkpoints_pay: Callable[[], bool] = lambda: True,
                 on_call: Callable[[CallRecord], None] | None = None,
                 on_resumed: Callable[[], None] | None = None,
                 stopping: Callable[[], bool] = lambda: False):
        self.run_id = run_id
        self.family = family
        self.graph = graph
        self.context = context
        self.checkpoints = checkpoints
        # The graph without a checkpointer, for a new seed when checkpoints do not pay (the runner's call).
        self.unchecked_graph = unchecked_graph if unchecked_graph is not None else graph
        self.checkpoints_pay = checkpoints_pay
        self.on_call = on_call
        self.on_resumed = on_resumed or (lambda: None)
        self.stopping = stopping

    async def run(self, seed: SeedBase) -> SeedOutcome:
        """The seed's outcome: its rows and lineage, or one `seed_error` sample when its graph raised. Must run in
        a task of its own (the call log is a context variable of the task)."""
        log = CallLog(on_call=self.on_call, seed_key=seed.seed_id)
        current_call_log.set(log)
        seed_id = seed.seed_id
        try:
            state = await self._invoke(seed)
            samples, messages, verdicts, sample_ids = self.family.to_rows(
                state, run_id=self.run_id, seed_id=seed_id, context=self.context)
            status, error = "done", None
        except ModelServerDown:
            raise
        except Exception as exc:  # a bug or a dead engine must cost one seed, not the run
            if self.stopping():
                raise SeedAbandoned(seed_id) from exc
            error = f"{type(exc).__name__}: {exc}"
            samples = [error_sample(self.run_id, seed_id, error, traceback.format_exc())]
            messages, verdicts, sample_ids, status = [], [], {}, "error"
        ordinals: Counter[tuple[str, str | None]] = Counter()
        calls = []
        for record in log.records:
            ordinals[record.node, record.subject] += 1
            calls.append(self._call_row(record, seed_id, sample_ids.get(record.subject),
                                        ordinals[record.node, record.subject]))
        return SeedOutcome(run_id=self.run_id, seed_id=seed_id, status=status, error=error, samples=samples,
                           messages=messages, verdicts=verdicts, agent_calls=calls)

    async def _invoke(self, seed: SeedBase):
        """Run the seed's graph; with checkpoints, a seed that was in flight when a run died goes on from its
        last finished node."""
        graph, checkpoints = self.graph, self.checkpoints
        resumable = checkpoints is not None and checkpoints.may_hold(self.run_id, seed.seed_id)
        if checkpoints is None or (not resumable and not self.checkpoints_pay()):
            return await self.unchecked_graph.ainvoke(self.family.initial_state(seed), context=self.context)
        # LangGraph's default durability ("async": a step's checkpoint is written while the next step runs) loses
        # at most one more step to a kill. "sync" would be tighter, but a subgraph compiled without a checkpointer
        # (tool_use, domain) then fails inside langgraph 1.2 (`AsyncPregelLoop` has no `_put_checkpoint_fut`).
        config = checkpoints.config(self.run_id, seed.seed_id)
        if resumable and (await graph.aget_state(config)).values:
            # Input None goes on from the checkpoint: the writes of nodes that finished in the step the kill cut
            # short are applied, the rest run; a thread that had reached the end just gives its state back.
            # (`saved.next` is no test of "finished": it is empty too when every node of the cut step had finished.)
            self.on_resumed()
            return await graph.ainvoke(None, config, context=self.context)
        return await graph.ainvoke(self.family.initial_state(seed), config, context=self.context)

    def _call_row(self, record: CallRecord, seed_id: str, sample_id: str | None, ordinal: int) -> AgentCallRow:
        # The id derives from run, seed, node, subject and the call's place among that node's calls about that
        # subject, so redoing a seed rewrites the same ids instead of leaving a second, orphaned lineage.
        call_id = stable_id(self.run_id, seed_id, record.node, record.subject, ordinal)
        # The record was validated when the call was made: its fields are copied by reference, not re-validated
        # (a prompt is a list of messages, and there is a row per call).
        return AgentCallRow.model_construct(**{name: getattr(record, name) for name in _RECORDED_CALL_FIELDS},
                                            call_id=call_id, run_id=self.run_id, seed_id=seed_id, sample_id=sample_id)


def error_sample(run_id: str, seed_id: str, error: str, trace: str) -> SampleRow:
    """The one sample of a seed that crashed: its error, and the end of the traceback."""
    return SampleRow(sample_id=stable_id(run_id, seed_id, "seed_error"), run_id=run_id, seed_id=seed_id,
                     group_id=stable_id(run_id, seed_id), kind="seed_error", status="error", reason=error,
                     payload={"traceback": trace[-4000:]})
