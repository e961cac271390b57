"""The cleaning stage every recipe runs: benchmark decontamination of seeds and samples, and deduplication.

Seeds are screened before any model call: a seed that overlaps an evaluation set is recorded (a rejected sample
of kind `seed_contaminated` with its `decontamination` verdict) and not generated from. Every finished seed then
passes `SampleCleaner.check` on its way to the store's single writer, in the writer's order: its accepted samples
are compared with what the store already holds (this run, or every run) plus what this run accepted before it,
and a contaminated or duplicate one is rejected (or flagged) with a verdict naming the benchmark item or the
sample it collides with. A sample already stored is never re-decided, so a resumed run keeps what it kept.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from synthgraph.store.cleaning import TextPart, record_findings, reject_flagged, sample_text, stored_texts
from synthgraph.store.db import Store
from synthgraph.store.rows import SampleRow, SeedOutcome, VerdictRow, stable_id
from synthgraph.tools.dedup import BUILTIN_BENCHMARKS, BenchmarkHit, Decontaminator, NearDuplicateIndex, PreparedText, \
    check_benchmark_spec

if TYPE_CHECKING:
    from synthgraph.graphs.recipe import RecipeBase, SeedBase

CleaningAction = Literal["reject", "flag"]


def _switch(data: Any) -> Any:
    """`dedup: false` / `decontaminate: false` turn a stage off; `true` keeps its defaults."""
    return {"enabled": data} if isinstance(data, bool) else data


class DedupSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    scope: Literal["run", "store"] = Field("run", description="compare with this run's samples, or every run's "
                                                              "in the store")
    threshold: float = Field(0.8, gt=0, le=1, description="estimated Jaccard similarity of word shingles at "
                                                          "which two samples are duplicates")
    text: TextPart = Field("user", description="what is compared: the user turns (the task), the assistant turns, "
                                               "or the conversation; samples of one seed share their task by "
                                               "design and are not compared on user text")
    action: CleaningAction = Field("reject", description="reject the later sample, or keep it flagged")

    @model_validator(mode="before")
    @classmethod
    def _on_off(cls, data: Any) -> Any:
        return _switch(data)


class DecontaminationSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    benchmarks: list[str] | None = Field(
        None, description=f"built-in sets ({', '.join(BUILTIN_BENCHMARKS)}) and/or PATH:FIELD of a JSONL or "
                          "Parquet file (relative to the recipe); default: every built-in set that is installed")
    text: TextPart = Field("conversation", description="which turns of a sample are checked")
    action: CleaningAction = Field("reject", description="reject a contaminated sample, or keep it flagged "
                                                         "(contaminated seeds are skipped either way)")

    @model_validator(mode="before")
    @classmethod
    def _on_off(cls, data: Any) -> Any:
        return _switch(data)

    @field_validator("benchmarks")
    @classmethod
    def _known(cls, benchmarks: list[str] | None) -> list[str] | None:
        for spec in benchmarks or []:
            check_benchmark_spec(spec)
        return benchmarks


@dataclass
class CleaningTally:
    duplicates: int = 0
    contaminated: int = 0
    contaminated_seeds: int = 0
    flagged: int = 0
    missing_benchmarks: list[str] = field(default_factory=list)  # install hints for built-in sets not installed
    unchecked_items: list[str] = field(default_factory=list)  # user files' items too short to check


def hit_detail(hits: list[BenchmarkHit]) -> str:
    return "; ".join(hit.describe() for hit in hits[:3]) + (f"; and {len(hits) - 3} more" if len(hits) > 3 else "")


def decontamination_verdict(sample_id: str, hits: list[BenchmarkHit]) -> VerdictRow:
    return VerdictRow(sample_id=sample_id, verifier="decontamination", outcome="failed",
                      score=round(max(h.coverage for h in hits), 3), detail=f"overlaps {hit_detail(hits)}")


def dedup_verdict(sample_id: str, other: str, similarity: float, part: str, where: str = "") -> VerdictRow:
    return VerdictRow(sample_id=sample_id, verifier="dedup", outcome="failed", score=round(similarity, 3),
                      detail=f"{'exact' if similarity >= 1 else 'near'}-duplicate of sample {other}{where} "
                             f"(estimated Jaccard {similarity:.2f} on {part} text)")


def seed_text(seed: SeedBase) -> str:
    """Every string a seed carries (topic, problem, prompt, request, turns, ...), one per line."""
    def strings(value: Any):
        if isinstance(value, str):
            yield value
        elif isinstance(value, dict):
            for item in value.values():
                yield from strings(item)
        elif isinstance(value, list):
            for item in value:
                yield from strings(item)
    return "\n".join(strings(seed.model_dump(exclude_none=True)))


def resolve_benchmarks(benchmarks: list[str] | None, base: Path | None) -> list[str] | None:
    """PATH:FIELD specs with PATH relative to the recipe's folder."""
    if benchmarks is None or base is None:
        return benchmarks
    resolved = []
    for spec in benchmarks:
        if spec not in BUILTIN_BENCHMARKS:
            path, _, column = spec.rpartition(":")
            spec = f"{Path(path) if Path(path).is_absolute() else base / path}:{column}"
        resolved.append(spec)
    return resolved


@dataclass(frozen=True)
class _Kept:
    sample_id: str
    run_id: str
    seed_id: str
    group_id: str


class SampleCleaner:
    """The stage's state for one run: the decontaminator and the index of kept samples."""

    def __init__(self, dedup: DedupSettings, decontaminate: DecontaminationSettings, *, run_id: str,
                 decontaminator: Decontaminator | None = None):
        self.dedup = dedup
        self.decontaminate = decontaminate
        self.run_id = run_id
        self.decontaminator = decontaminator if decontaminate.enabled else None
        self.index = NearDuplicateIndex(dedup.threshold) if dedup.enabled else None
        self.kept: dict[str, _Kept] = {}
        self.tally = CleaningTally()
        if self.decontaminator is not None:
            self.decontaminator.load()  # now, before any model loads: a missing package or file fails here
            self.tally.missing_benchmarks = list(self.decontaminator.missing)
            self.tally.unchecked_items = list(self.decontaminator.unchecked)

    @classmethod
    def for_run(cls, recipe: RecipeBase, store: Store, run_id: str) -> SampleCleaner:
        """Raises tools.dedup.BenchmarkError for a benchmark that cannot be loaded."""
        settings = recipe.decontaminate
        decontaminator = Decontaminator(resolve_benchmarks(settings.benchmarks, recipe._base)) \
            if settings.enabled else None
        cleaner = cls(recipe.dedup, settings, run_id=run_id, decontaminator=decontaminator)
        if cleaner.index is not None:
            scope = None if recipe.dedup.scope == "store" else run_id
            for row in stored_texts(store.con, recipe.dedup.text, run_id=scope):
                cleaner._keep(_Kept(row.sample_id, row.run_id, row.seed_id, row.group_id),
                              cleaner.index.prepare(row.text))
        return cleaner

    def _keep(self, sample: _Kept, text: PreparedText) -> None:
        assert self.index is not None
        self.kept[sample.sample_id] = sample
        self.index.insert(sample.sample_id, text)

    def skip_contaminated_seeds(self, seeds: list[SeedBase], store: Store) -> list[SeedBase]:
        """The seeds that are clean; each contaminated one is written to the store as done, with a rejected
        `seed_contaminated` sample and its verdict, so the user sees it and a rerun does not try it again."""
        if self.decontaminator is None:
            return seeds
        clean, outcomes = [], []
        for seed in seeds:
            hits = self.decontaminator.check(seed_text(seed))
            if not hits:
                clean.append(seed)
                continue
            sample_id = stable_id(self.run_id, seed.seed_id, "seed_contaminated")
            outcomes.append(SeedOutcome(
                run_id=self.run_id, seed_id=seed.seed_id, status="done",
                samples=[SampleRow(sample_id=sample_id, run_id=self.run_id, seed_id=seed.seed_id,
                                   group_id=stable_id(self.run_id, seed.seed_id), kind="seed_contaminated",
                                   status="rejected", reason=f"seed overlaps {hit_detail(hits)}",
                                   payload={"hits": [{"benchmark": h.benchmark, "item_id": h.item_id,
                                                      "ngram": h.ngram, "matched": h.matched, "of": h.of}
                                                     for h in hits]})],
                verdicts=[decontamination_verdict(sample_id, hits)]))
        store.write_outcomes(outcomes)
        self.tally.contaminated_seeds += len(outcomes)
        return clean

    def contaminated_seeds(self, store: Store) -> set[str]:
        """The seeds of this run found contaminated, by this invocation or an earlier one."""
        return {row[0] for row in store.con.execute(
            "SELECT seed_id FROM samples WHERE run_id = ? AND kind = 'seed_contaminated'", [self.run_id]).fetchall()}

    def check(self, outcome: SeedOutcome) -> SeedOutcome:
        """The outcome with its contaminated and duplicate accepted samples rejected (or flagged)."""
        if self.decontaminator is None and self.index is None:
            return outcome
        samples, verdicts = [], list(outcome.verdicts)
        turns_of: dict[str, list] = {}
        for message in outcome.messages:
            turns_of.setdefault(message.sample_id, []).append(message)
        # The samples of one seed often share a text (the task, on the user side): it is checked against the
        # benchmarks and sketched once.
        hits: dict[str, list[BenchmarkHit]] = {}
        sketches: dict[str, PreparedText] = {}
        decided: dict[tuple[str, str], tuple[str, float] | None] = {}
        for sample in outcome.samples:
            if sample.status == "accepted":
                turns = turns_of.get(sample.sample_id, [])
                finding = (self._decontaminate(sample, turns, hits)
                           or self._deduplicate(sample, turns, sketches, decided))
                if finding is not None:
                    verdict, action = finding
                    verdicts.append(verdict)
                    if action == "reject":
                        sample = sample.model_copy(update={"status": "rejected",
                                                           "reason": f"{verdict.verifier}: {verdict.detail}"})
                    else:
                        self.tally.flagged += 1
            samples.append(sample)
        return outcome.model_copy(update={"samples": samples, "verdicts": verdicts})

    def _decontaminate(self, sample: SampleRow, turns, known: dict[str, list[BenchmarkHit]]
                       ) -> tuple[VerdictRow, CleaningAction] | None:
        if self.decontaminator is None:
            return None
        text = sample_text(turns, self.decontaminate.text)
        if text not in known:
            known[text] = self.decontaminator.check(text)
        hits = known[text]
        if not hits:
            return None
        self.tally.contaminated += 1
        return decontamination_verdict(sample.sample_id, hits), self.decontaminate.action

    def _deduplicate(self, sample: SampleRow, turns, known: dict[str, PreparedText],
                     decided: dict[tuple[str, str], tuple[str, float] | None]
                     ) -> tuple[VerdictRow, CleaningAction] | None:
        if self.index is None:
            return None
        raw = sample_text(turns, self.dedup.text)
        if raw not in known:
            known[raw] = self.index.prepare(raw)
        text = known[raw]
        by_group = self.dedup.text == "user"   # answers to one task share its prompt by design
        # On user text the samples of a group are never each other's duplicates, so the first of them to bring a
        # text decides for the rest: all kept, or all copies of the same earlier sample. (Most seeds have k
        # samples of one task: one index lookup instead of k.)
        key = (sample.group_id, raw)
        if by_group and key in decided:
            duplicate = decided[key]
        else:
            duplicate = next(((other_id, similarity) for other_id, similarity in self.index.match(text)
                              if not (by_group and self.kept[other_id].group_id == sample.group_id)), None)
            if by_group:
                decided[key] = duplicate
        if duplicate is None:
            self._keep(_Kept(sample.sample_id, sample.run_id, sample.seed_id, sample.group_id), text)
            return None
        other_id, similarity = duplicate
        other = self.kept[other_id]
        self.tally.duplicates += 1
        where = f" (seed {other.seed_id}" + ("" if other.run_id == sample.run_id else f", run {other.run_id}") + ")"
        return dedup_verdict(sample.sample_id, other_id, similarity, self.dedup.text, where), self.dedup.action


@dataclass
class StoreFindings:
    """What `synthgraph dedup` / `decontaminate` found in a store: (sample id, what it collides with, score), and
    with `reject` how many samples that made rejected (those flagged before included)."""

    checked: int
    findings: list[tuple[str, str, float]]
    new_verdicts: int
    rejected: int = 0


def dedup_store(store: Store, *, run_id: str | None, threshold: float, text: TextPart,
                action: CleaningAction) -> StoreFindings:
    """Deduplicate the accepted, unflagged samples of a run (or of every run) in the order they were written:
    each later copy gets a `dedup` verdict naming the first. Samples already flagged are left out, so a rerun
    finds nothing new; `reject` rejects every sample flagged as a copy, now or before."""
    index = NearDuplicateIndex(threshold)
    groups: dict[str, str] = {}
    verdicts, findings = [], []
    rows = stored_texts(store.con, text, run_id=run_id)
    for row in rows:
        prepared = index.prepare(row.text)
        match = next(((other, similarity) for other, similarity in index.match(prepared)
                      if not (text == "user" and groups[other] == row.group_id)), None)
        if match is None:
            groups[row.sample_id] = row.group_id
            index.insert(row.sample_id, prepared)
            continue
        verdicts.append(dedup_verdict(row.sample_id, match[0], match[1], text))
        findings.append((row.sample_id, match[0], match[1]))
    return _recorded(store, "dedup", rows, findings, verdicts, action, run_id)


def _recorded(store: Store, verifier: str, rows: list, findings: list, verdicts: list[VerdictRow],
              action: CleaningAction, run_id: str | None) -> StoreFindings:
    new_verdicts = record_findings(store, verdicts)
    rejected = reject_flagged(store, verifier, run_id=run_id) if action == "reject" else 0
    return StoreFindings(len(rows), findings, new_verdicts, rejected)


def decontaminate_store(store: Store, decontaminator: Decontaminator, *, run_id: str | None, text: TextPart,
                        action: CleaningAction) -> StoreFindings:
    """Check the accepted samples of a run (or of every run) not yet found contaminated against the benchmarks;
    each that overlaps one gets a `decontamination` verdict naming the items. A sample flagged as a duplicate is
    checked too: it stays in exports that do not leave flagged samples out. `reject` rejects every sample found
    contaminated, now or before."""
    verdicts, findings = [], []
    rows = stored_texts(store.con, text, run_id=run_id, exclude=("decontamination",))
    for row in rows:
        hits = decontaminator.check(row.text)
        if hits:
            verdicts.append(decontamination_verdict(row.sample_id, hits))
            findings.append((row.sample_id, f"{hits[0].benchmark} {hits[0].item_id}", hits[0].coverage))
    return _recorded(store, "decontamination", rows, findings, verdicts, action, run_id)
