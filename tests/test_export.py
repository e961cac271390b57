import json

from synthgraph.store.export import sharegpt_record

CALLS = [{"id": "call_0", "type": "function", "function": {"name": "convert_units", "arguments": '{"value": 3}'}},
         {"id": "call_1", "type": "function", "function": {"name": "calculate", "arguments": '{"expression": "2+2"}'}}]
TOOLS = [{"type": "function", "function": {"name": "convert_units", "parameters": {"type": "object"}}}]


def test_sharegpt_puts_system_and_tools_beside_the_conversation():
    record = sharegpt_record([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"},
                              {"role": "assistant", "content": "hello"}], TOOLS)
    assert record["system"] == "be brief"
    assert record["conversations"] == [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]
    assert json.loads(record["tools"]) == [TOOLS[0]["function"]]


def test_sharegpt_parallel_calls_become_one_function_call_and_one_observation():
    record = sharegpt_record([
        {"role": "user", "content": "convert and add"},
        {"role": "assistant", "content": None, "tool_calls": CALLS},
        {"role": "tool", "content": '{"result": 1}', "tool_call_id": "call_0", "name": "convert_units"},
        {"role": "tool", "content": '{"result": 4}', "tool_call_id": "call_1", "name": "calculate"},
        {"role": "assistant", "content": "1 and 4"},
    ])
    kinds = [turn["from"] for turn in record["conversations"]]
    assert kinds == ["human", "function_call", "observation", "gpt"]
    assert json.loads(record["conversations"][1]["value"]) == [
        {"name": "convert_units", "arguments": {"value": 3}}, {"name": "calculate", "arguments": {"expression": "2+2"}}]
    assert json.loads(record["conversations"][2]["value"]) == ['{"result": 1}', '{"result": 4}']


def test_sharegpt_single_call_is_an_object_not_a_list():
    record = sharegpt_record([{"role": "user", "content": "x"},
                              {"role": "assistant", "content": None, "tool_calls": CALLS[:1]},
                              {"role": "tool", "content": "3", "tool_call_id": "call_0", "name": "convert_units"}])
    assert json.loads(record["conversations"][1]["value"]) == {"name": "convert_units", "arguments": {"value": 3}}
    assert record["conversations"][2] == {"from": "observation", "value": "3"}


# ----------------------------------------------------------------------------------- exports from a store

import pytest  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from synthgraph.graphs.cli import app  # noqa: E402
from synthgraph.store.db import Store  # noqa: E402
from synthgraph.store.rows import MessageRow, RunRow, SampleRow, SeedOutcome, SeedRow, VerdictRow  # noqa: E402

ADD_TOOL = [{"type": "function", "function": {"name": "add", "description": "a + b", "parameters": {
    "type": "object", "properties": {"a": {"type": "number"}, "b": {"type": "number"}}, "required": ["a", "b"]}}}]
ADD_CALL = [{"id": "call_0", "type": "function", "function": {"name": "add", "arguments": '{"a": 2, "b": 3}'}}]


def tool_store(path) -> None:
    """A tool-use run: one accepted trajectory (call, result, answer) and one rejected by a failed check."""
    def sample(sid, status, score, reason=None):
        return SampleRow(sample_id=sid, run_id="run1", seed_id="s1", group_id="g1", kind="tool_trajectory",
                         status=status, score=score, reason=reason, payload={"tools": ADD_TOOL, "metadata": "mine"})
    good = [MessageRow(sample_id="good", turn=0, role="user", content="What is 2 + 3?"),
            MessageRow(sample_id="good", turn=1, role="assistant", content=None, tool_calls=ADD_CALL),
            MessageRow(sample_id="good", turn=2, role="tool", content="5", tool_call_id="call_0", name="add"),
            MessageRow(sample_id="good", turn=3, role="assistant", content="2 + 3 = 5.")]
    bad = [MessageRow(sample_id="bad", turn=0, role="user", content="What is 2 + 3?"),
           MessageRow(sample_id="bad", turn=1, role="assistant", content="It is 6.")]
    store = Store(path)
    try:
        store.register_run(RunRow(run_id="run1", name="tools-demo", graph="tool_use", recipe={"name": "tools-demo"}),
                           [SeedRow(run_id="run1", seed_id="s1", position=0, payload={})])
        store.write_outcomes([SeedOutcome(
            run_id="run1", seed_id="s1", status="done",
            samples=[sample("good", "accepted", 9.0), sample("bad", "rejected", None, "tool_choice: no tool called")],
            messages=good + bad,
            verdicts=[VerdictRow(sample_id="good", verifier="format", outcome="passed", score=1.0),
                      VerdictRow(sample_id="bad", verifier="tool_choice", outcome="failed", score=0.0, detail="none")])])
    finally:
        store.close()


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "s.duckdb"
    tool_store(path)
    return path


def export(db, *args):
    return CliRunner().invoke(app, ["export", "--db", str(db), *args])


def read_jsonl(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_jsonl_tool_call_arguments_are_objects_with_the_record_fields(db, tmp_path):
    out = tmp_path / "chat.jsonl"
    assert export(db, "--out", str(out)).exit_code == 0
    (record,) = read_jsonl(out)
    assert list(record) == ["messages", "tools", "sample_id", "run_id", "seed_id", "group_id", "kind", "status",
                            "score", "reason", "metadata"]
    assert record["messages"][1]["tool_calls"][0]["function"]["arguments"] == {"a": 2, "b": 3}
    assert record["tools"] == ADD_TOOL


def test_status_all_is_accepted_and_a_wrong_status_is_one_clear_line(db, tmp_path):
    out = tmp_path / "all.jsonl"
    result = export(db, "--out", str(out), "--status", "all")
    assert result.exit_code == 0 and len(read_jsonl(out)) == 2
    bad = export(db, "--out", str(tmp_path / "x.jsonl"), "--status", "good")
    assert bad.exit_code == 2 and "--status must be accepted, rejected, error or all (got 'good')" in bad.output
    help_text = CliRunner().invoke(app, ["export", "--help"], env={"COLUMNS": "250"}).output  # unwrapped
    assert "default: accepted" in help_text


def test_sharegpt_metadata_is_one_flat_object(db, tmp_path):
    out = tmp_path / "sg.jsonl"
    assert export(db, "--out", str(out), "--format", "sharegpt").exit_code == 0
    (record,) = read_jsonl(out)
    assert set(record) == {"conversations", "tools", "metadata"}
    # the sample's own columns win over a payload key of the same name; no metadata.metadata
    assert record["metadata"]["sample_id"] == "good" and record["metadata"]["status"] == "accepted"
    assert record["metadata"]["metadata"] == "mine" and "tools" not in record["metadata"]
    assert not isinstance(record["metadata"]["metadata"], dict)


def test_parquet_stores_tool_calls_as_typed_structs(db, tmp_path):
    import datasets
    import pyarrow.parquet as pq

    out = tmp_path / "chat.parquet"
    assert export(db, "--out", str(out), "--format", "parquet").exit_code == 0
    message_type = pq.read_schema(out).field("messages").type.value_type
    call_type = message_type.field("tool_calls").type.value_type
    assert [call_type.field(i).name for i in range(call_type.num_fields)] == ["id", "type", "function"]
    assert str(call_type.field("function").type.field("name").type) == "string"
    loaded = datasets.load_dataset("parquet", data_files=str(out), split="train")
    assert loaded[0]["messages"][1]["tool_calls"][0]["function"] == {"name": "add", "arguments": {"a": 2, "b": 3}}
    assert loaded[0]["tools"] == ADD_TOOL


def test_dpo_records_are_trl_conversational_preference_rows(db, tmp_path):
    out = tmp_path / "dpo.jsonl"
    result = export(db, "--out", str(out), "--format", "dpo")
    assert result.exit_code == 0 and "wrote 1 dpo records" in result.output
    (record,) = read_jsonl(out)
    assert list(record) == ["prompt", "chosen", "rejected", "tools", "source", "run_id", "group_id", "margin",
                            "reason", "chosen_sample_id", "rejected_sample_id"]
    assert record["prompt"] == [{"role": "user", "content": "What is 2 + 3?"}]
    assert [m["role"] for m in record["chosen"]] == ["assistant", "tool", "assistant"]
    assert record["chosen"][0]["tool_calls"][0]["function"]["arguments"] == {"a": 2, "b": 3}
    assert record["rejected"] == [{"role": "assistant", "content": "It is 6."}]
    assert record["source"] == "verified" and record["reason"] == "tool_choice: no tool called"


def test_kto_records_label_each_paired_sample_once(db, tmp_path):
    out = tmp_path / "kto.jsonl"
    assert export(db, "--out", str(out), "--format", "kto").exit_code == 0
    records = read_jsonl(out)
    assert [list(r)[:3] for r in records] == [["prompt", "completion", "label"]] * 2
    assert [(r["sample_id"], r["label"]) for r in records] == [("good", True), ("bad", False)]
    assert "unknown" in export(db, "--out", str(out), "--format", "kto", "--source", "unknown").output


def test_hf_folder_loads_with_datasets_and_carries_its_card(db, tmp_path):
    import datasets
    from huggingface_hub import DatasetCard

    out = tmp_path / "hf"
    result = export(db, "--out", str(out), "--format", "hf", "--records", "dpo", "--license", "apache-2.0")
    assert result.exit_code == 0, result.output
    loaded = datasets.load_from_disk(str(out))
    assert loaded.column_names[:3] == ["prompt", "chosen", "rejected"] and len(loaded) == 1
    card = DatasetCard((out / "README.md").read_text())
    meta = card.data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["task_categories"] == ["text-generation"]
    assert meta["size_categories"] == ["n<1K"] and "dpo" in meta["tags"]
    (run,) = meta["synthgraph"]["runs"]
    assert run["recipe"] == {"name": "tools-demo"} and run["yield"] == 0.5
    assert run["verdict_mix"] == {"format": {"passed": 1}, "tool_choice": {"failed": 1}}
    assert meta["synthgraph"]["pairs_per_source"] == {"verified": 1}
    assert "| tool_choice | 0 | 1 | 0 |" in card.text
    # an existing folder with files in it is never written into
    again = export(db, "--out", str(out), "--format", "hf")
    assert again.exit_code == 2 and "not an empty folder" in again.output


def test_exclude_flagged_leaves_flagged_samples_out_of_pairs_and_hf_folders(db, tmp_path):
    from synthgraph.store.cleaning import record_findings

    store = Store(db)
    try:  # what `synthgraph dedup` (action flag) leaves: a failed verdict on a sample that stays accepted
        record_findings(store, [VerdictRow(sample_id="good", verifier="dedup", outcome="failed", score=1.0,
                                           detail="exact-duplicate of sample elsewhere")])
    finally:
        store.close()
    for format in ("dpo", "kto"):
        out = tmp_path / f"{format}.jsonl"
        assert export(db, "--out", str(out), "--format", format).exit_code == 0 and read_jsonl(out)
        result = export(db, "--out", str(out), "--format", format, "--exclude-flagged", "--force")
        assert result.exit_code == 0 and read_jsonl(out) == []
    import datasets

    out = tmp_path / "hf"
    assert export(db, "--out", str(out), "--format", "hf", "--status", "all", "--exclude-flagged").exit_code == 0
    assert datasets.load_from_disk(str(out))["sample_id"] == ["bad"]


def test_samples_without_turns_are_named_not_dropped_silently(db, tmp_path):
    store = Store(db)
    try:  # a crashed seed: one error sample, no chat turns
        store.write_outcomes([SeedOutcome(run_id="run1", seed_id="s2", status="error", error="boom", samples=[
            SampleRow(sample_id="crash", run_id="run1", seed_id="s2", group_id="g2", kind="seed_error",
                      status="error", reason="RuntimeError: boom")])])
    finally:
        store.close()
    out = tmp_path / "errors.jsonl"
    result = export(db, "--out", str(out), "--status", "error")
    assert result.exit_code == 0 and read_jsonl(out) == []
    assert "1 error samples have no chat turns" in " ".join(result.output.split())
    assert "no chat turns" not in export(db, "--out", str(tmp_path / "ok.jsonl")).output  # accepted: none left out


def test_push_needs_the_hf_format(db, tmp_path):
    result = export(db, "--out", str(tmp_path / "x.jsonl"), "--push", "me/data")
    assert result.exit_code == 2 and "--push needs --format hf" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "jsonl", "--source", "verified"], "--source picks preference pairs"),
    (["--format", "hf", "--source", "verified"], "--source picks preference pairs"),
    (["--format", "jsonl", "--records", "dpo"], "--records picks what a --format hf folder holds"),
    (["--format", "dpo", "--records", "kto"], "use --format kto"),
    (["--format", "dpo", "--status", "rejected"], "--status picks samples"),
    (["--format", "hf", "--records", "kto", "--status", "all"], "--status picks samples"),
    (["--format", "sharegpt", "--license", "mit"], "only --format hf writes a card"),
])
def test_an_option_the_format_cannot_use_is_one_clear_line(db, tmp_path, args, message):
    out = tmp_path / "x"
    result = export(db, "--out", str(out), *args)
    assert result.exit_code == 2 and message in " ".join(result.output.split()) and not out.exists()


def test_force_never_replaces_an_hf_folder(db, tmp_path):
    out = tmp_path / "hf"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    result = export(db, "--out", str(out), "--format", "hf", "--force")
    assert result.exit_code == 2 and "--force never replaces a folder" in " ".join(result.output.split())
    assert (out / "mine.txt").read_text() == "keep"


def qwen_tokenizer():
    """The embedded model's tokenizer (its own chat template), when the model was prepared on this machine."""
    from synthgraph.agents import shipped_models

    if not shipped_models.is_prepared(shipped_models.DEFAULT_MODEL):
        pytest.skip("the embedded model is not prepared here (synthgraph models --prepare qwen2.5-coder-0.5b)")
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(shipped_models.model_dir(shipped_models.DEFAULT_MODEL)))


@pytest.mark.slow  # imports transformers
@pytest.mark.parametrize("format", ["jsonl", "parquet"])
def test_qwen_chat_template_renders_exported_arguments_as_an_object(db, tmp_path, format):
    import datasets

    tokenizer = qwen_tokenizer()
    out = tmp_path / f"chat.{format}"
    assert export(db, "--out", str(out), "--format", format).exit_code == 0
    (record,) = datasets.load_dataset("json" if format == "jsonl" else "parquet", data_files=str(out), split="train")
    text = tokenizer.apply_chat_template(record["messages"], tools=record["tools"], tokenize=False)
    assert '"arguments": {"a": 2, "b": 3}' in text
    assert '"arguments": "' not in text


def test_an_empty_hf_export_is_refused_and_an_empty_parquet_keeps_its_schema(db, tmp_path):
    import pyarrow.parquet as pq

    out = tmp_path / "empty"
    result = export(db, "--out", str(out), "--format", "hf", "--records", "kto", "--run", "run1", "--source", "judged")
    assert result.exit_code == 2 and "nothing to export: no preference pairs in run run1" in result.output
    assert not out.exists()
    parquet = tmp_path / "none.parquet"
    assert export(db, "--out", str(parquet), "--format", "parquet", "--status", "error").exit_code == 0
    table = pq.read_table(parquet)
    assert table.num_rows == 0 and table.column_names[:2] == ["messages", "tools"]


def test_a_sharegpt_export_says_when_words_beside_tool_calls_have_no_place(tmp_path):
    from synthgraph.store.db import Store
    from synthgraph.store.export import export_samples
    from synthgraph.store.rows import MessageRow, RunRow, SampleRow, SeedOutcome, SeedRow

    db = tmp_path / "s.duckdb"
    store = Store(db)
    store.register_run(RunRow(run_id="r", name="t", graph="reasoning", recipe={}),
                       [SeedRow(run_id="r", seed_id="s", position=0, payload={})])
    call = [{"id": "c1", "type": "function", "function": {"name": "python", "arguments": "{\"code\": \"6*7\"}"}}]
    store.write_outcomes([SeedOutcome(run_id="r", seed_id="s", status="done", samples=[
        SampleRow(sample_id="x", run_id="r", seed_id="s", group_id="s", kind="reasoning_trace", status="accepted")],
        messages=[MessageRow(sample_id="x", turn=0, role="user", content="6 bags of 7?"),
                  MessageRow(sample_id="x", turn=1, role="assistant", content="Multiply the bags.", tool_calls=call),
                  MessageRow(sample_id="x", turn=2, role="tool", content="42", tool_call_id="c1", name="python"),
                  MessageRow(sample_id="x", turn=3, role="assistant", content="42 apples.")])])
    store.close()
    notes: list[str] = []
    assert export_samples(db, tmp_path / "o.jsonl", format="sharegpt", notice=notes.append) == 1
    assert notes == ["1 assistant turns said something beside their tool calls; ShareGPT's function_call turn has no "
                     "place for the words, so they are not in this file (jsonl and parquet keep them)"]
    notes.clear()
    export_samples(db, tmp_path / "o2.jsonl", format="jsonl", notice=notes.append)
    assert notes == [] and "Multiply the bags." in (tmp_path / "o2.jsonl").read_text()


def test_a_card_of_rejected_samples_does_not_call_them_kept_or_sft(db, tmp_path):
    from huggingface_hub import DatasetCard

    rejected, accepted = tmp_path / "rejected", tmp_path / "accepted"
    assert export(db, "--out", str(rejected), "--format", "hf", "--status", "rejected").exit_code == 0
    card = DatasetCard((rejected / "README.md").read_text())
    assert "sft" not in card.data.to_dict()["tags"] and "before it was kept" not in card.text
    assert "these are the samples the verifiers below rejected" in " ".join(card.text.split())
    assert export(db, "--out", str(accepted), "--format", "hf").exit_code == 0
    card = DatasetCard((accepted / "README.md").read_text())
    assert "sft" in card.data.to_dict()["tags"] and "checked by the verifiers below before it was kept" in card.text
