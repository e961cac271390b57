"""Do synthgraph's DPO / KTO exports train without edits? Loads each export with `datasets`, renders every record
with TRL's `maybe_apply_chat_template` and the embedded model's own tokenizer (Qwen2.5 chat template), checks that
tool-call arguments render as JSON objects (not strings encoded twice), then runs TRL's DPOTrainer and KTOTrainer
for one step each on a tiny randomly initialised Qwen2 model that shares that tokenizer (their dataset preparation
is what is being checked, not the model). Prints what it found.

TRL is not a synthgraph dependency: run it in a scratch environment that has `trl` beside synthgraph's packages:
  python bench/trl_acceptance.py --dpo pairs.dpo.jsonl --kto pairs.kto.jsonl --tokenizer MODEL_FOLDER
"""

from __future__ import annotations

import argparse
import re
import tempfile

import datasets
import trl
from transformers import AutoTokenizer, Qwen2Config, Qwen2ForCausalLM


def tiny_model(tokenizer) -> Qwen2ForCausalLM:
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=4096,
                         pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return Qwen2ForCausalLM(config)


def check_rendering(dataset, tokenizer, columns: tuple[str, ...]) -> None:
    double_encoded = objects = 0
    for record in dataset:
        tools = record.get("tools") or None
        rendered = trl.maybe_apply_chat_template({c: record[c] for c in columns}, tokenizer, tools=tools)
        text = "".join(v for v in rendered.values() if isinstance(v, str))
        double_encoded += len(re.findall(r'"arguments": "', text))
        objects += len(re.findall(r'"arguments": \{', text))
    print(f"  maybe_apply_chat_template: {len(dataset)} records rendered; tool-call arguments as objects: "
          f"{objects}, as strings: {double_encoded}")
    assert double_encoded == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dpo", required=True)
    parser.add_argument("--kto", required=True)
    parser.add_argument("--tokenizer", required=True, help="a Hugging Face folder with a chat template")
    args = parser.parse_args()
    print(f"trl {trl.__version__}, datasets {datasets.__version__}")
    tokenizer = AutoTokenizer.from_pretrained(args.tokenizer)
    for name, path, columns, trainer_cls, config_cls in (
            ("dpo", args.dpo, ("prompt", "chosen", "rejected"), trl.DPOTrainer, trl.DPOConfig),
            ("kto", args.kto, ("prompt", "completion", "label"), trl.KTOTrainer, trl.KTOConfig)):
        dataset = datasets.load_dataset("json", data_files=path, split="train")
        print(f"{name}: {len(dataset)} records; columns {dataset.column_names}")
        print(f"  features: { {c: str(f) for c, f in dataset.features.items() if c in columns} }")
        check_rendering(dataset, tokenizer, columns)
        with tempfile.TemporaryDirectory() as out:
            config = config_cls(output_dir=out, max_steps=1, per_device_train_batch_size=2, report_to=[],
                                use_cpu=True, logging_steps=1, save_strategy="no", max_length=1024)
            trainer = trainer_cls(model=tiny_model(tokenizer), ref_model=tiny_model(tokenizer), args=config,
                                  train_dataset=dataset,
                                  processing_class=tokenizer)
            prepared = trainer.train_dataset
            print(f"  {trainer_cls.__name__}: prepared {len(prepared)} rows, columns {prepared.column_names}")
            result = trainer.train()
            print(f"  {trainer_cls.__name__}: one step, training loss {result.training_loss:.4f}")


if __name__ == "__main__":
    main()
