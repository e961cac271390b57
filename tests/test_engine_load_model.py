"""On the real embedded engine (vLLM CPU): it reports its queue from the scheduler's own statistics, and with the
priority policy a queued request of an earlier seed runs before one of a later seed that arrived first."""

from __future__ import annotations

import asyncio

import pytest

from synthgraph.agents.models import EngineLoad, EngineSettings, VLLMEngine, resolve_model_path

MODEL = "qwen2.5-coder-0.5b"


async def until(condition, timeout_s: float = 60.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "the engine never got there"
        await asyncio.sleep(0.02)


@pytest.mark.model
def test_the_engine_reports_running_and_waiting_and_serves_earlier_seeds_first():
    # One request at a time, so the other two queue behind it.
    engine = VLLMEngine(resolve_model_path(MODEL), EngineSettings(max_num_seqs=1, max_model_len=1024, kv_cache_gib=1.5),
                        served_name=MODEL)
    finished: list[str] = []

    # A prompt of several KV-cache blocks (128 tokens each on CPU): only whole blocks are reused.
    prompt = "Go on counting after these numbers: " + " ".join(str(i) for i in range(1, 200))

    async def ask(name: str, priority: int, max_tokens: int) -> None:
        await engine.generate([{"role": "user", "content": prompt}],
                              {"temperature": 0.0, "max_tokens": max_tokens}, priority=priority)
        finished.append(name)

    async def scenario():
        from vllm.platforms import current_platform

        await engine.start()
        assert engine.load() == EngineLoad(running=0, waiting=0, capacity=1)
        if current_platform.is_cpu():  # the size the settings give, fractions of a GiB included (a GPU sizes its own)
            assert engine._engine.vllm_config.cache_config.kv_cache_memory_bytes == 3 * 2**29
        first = asyncio.create_task(ask("first", 0, 64))
        await until(lambda: engine.watch.running == 1)
        later_seed = asyncio.create_task(ask("later seed", 9, 4))
        await asyncio.sleep(0.05)   # arrives first
        earlier_seed = asyncio.create_task(ask("earlier seed", 1, 4))
        await until(lambda: engine.watch.waiting == 2)   # the scheduler's count, through the stat logger
        queued = engine.load()
        await asyncio.gather(first, later_seed, earlier_seed)
        return queued

    try:
        queued = asyncio.run(scenario())
    finally:
        engine.shutdown()
    assert queued == EngineLoad(running=1, waiting=2, capacity=1)
    assert not queued.has_room()
    assert finished == ["first", "earlier seed", "later seed"]
    assert engine.watch.prefix_queries > 0   # the prefix cache is on: every prompt was looked up in it
    assert engine.watch.prefix_hits > 0      # ... and the three share one prompt
