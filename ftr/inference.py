"""One way to run a trained model, shared by `ftr eval`, `ftr merge`'s verification and `ftr serve`: the Run view
of build/<id>/, the dtype policy, the device, the training tokenizer and chat template, the stop token ids, greedy
decoding and loading the models (base + adapter, or a merged/full model).

The tokenizer always comes from the run's saved model folder (adapter/ or merged/): Axolotl saved it there with
the chat template it trained with, so prompts at inference are formatted exactly as in training. torch,
transformers and peft are imported inside the functions: importing this module stays cheap.
"""

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import yaml

from ftr import runs
from ftr.paths import resolve, run_dir

DTYPES = ("float32", "bfloat16", "float16")
# Every knob set: a checkpoint's generation_config.json (Qwen Instruct: repetition_penalty 1.05, sampling) must
# not change what "greedy" means.
GREEDY = dict(do_sample=False, num_beams=1, repetition_penalty=1.0, no_repeat_ngram_size=0)


class RunError(RuntimeError):
    """A run folder that lacks what the command needs; the message says what to run first."""


@dataclass
class Run:
    """What `ftr train` left for one recipe: build/<id>/ (dir: eval/ and merged/ live there) and the folder of its
    last completed run (build/<id>/current -> runs/<name>/: adapter/, data/, axolotl.yaml, logs/, run.json). A
    build tree of an older ftr has no pointer; then those files are read from build/<id>/ itself."""

    recipe_id: str
    dir: Path
    run_folder: Path | None = None

    @classmethod
    def of(cls, recipe_id: str) -> "Run":
        base = run_dir(recipe_id)
        return cls(recipe_id, base, runs.current(base))

    @property
    def home(self) -> Path:
        """Where this run's own files are: the completed run folder, or build/<id>/ in the flat layout."""
        return self.run_folder or self.dir

    @property
    def adapter(self) -> Path:
        return self.home / "adapter"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def manifest(self) -> Path:
        return self.home / "run.json"

    @property
    def merged(self) -> Path:
        return self.dir / "merged"

    @property
    def axolotl_yaml(self) -> Path:
        return self.home / "axolotl.yaml"

    def axolotl_config(self) -> dict:
        if not self.axolotl_yaml.exists():
            raise RunError(f"{self.axolotl_yaml} not found: train first with `make train RECIPE={self.recipe_id}`")
        return yaml.safe_load(self.axolotl_yaml.read_text(encoding="utf-8"))

    def require_adapter(self) -> Path:
        if not (self.adapter / "adapter_config.json").exists():
            raise RunError(f"no PEFT adapter in {self.adapter}: train first with `make train RECIPE={self.recipe_id}`")
        return self.adapter

    def base_model(self) -> str:
        """The base model training loaded: a local folder (absolute in the rendered YAML) or a hub id."""
        base = str(self.axolotl_config()["base_model"])
        local = resolve(base)
        return str(local) if local.exists() else base


def adapter_fingerprint(adapter_dir: Path) -> str:
    """sha256 of the adapter's weights and config: a merged model records it, serve compares it."""
    digest = hashlib.sha256()
    for name in ("adapter_config.json", "adapter_model.safetensors", "adapter_model.bin"):
        path = adapter_dir / name
        if path.exists():
            digest.update(name.encode())
            with open(path, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    digest.update(chunk)
    return digest.hexdigest()


def check_merged(run: Run) -> dict:
    """The merged model's verification figures, if it passed and was merged from the adapter there now."""
    report = run.merged / "verification.json"
    if not report.exists():
        raise RunError(f"no verified merged model in {run.merged}: run `make merge RECIPE={run.recipe_id}` "
                       f"or serve the adapter (MODEL=adapter)")
    figures = json.loads(report.read_text())
    if not figures.get("verification", {}).get("passed"):
        raise RunError(f"{report}: the merge did not pass verification; serve the adapter (MODEL=adapter)")
    if run.adapter.exists() and figures.get("adapter_sha256") != adapter_fingerprint(run.adapter):
        raise RunError(f"{run.merged} was merged from an earlier adapter than {run.adapter} (retrained since): "
                       f"run `make merge RECIPE={run.recipe_id}` again, or serve MODEL=adapter")
    return figures


def _flag(value) -> bool | str | None:
    if isinstance(value, str):
        lowered = value.strip().lower()
        return {"true": True, "false": False, "auto": "auto"}.get(lowered, lowered)
    return value


def training_dtype(cfg: dict, model_config: dict | None = None) -> tuple[str, str]:
    """(dtype name, reason): the precision training ran in, from the Axolotl config's bf16/fp16 flags.

    bf16: auto is resolved the way Axolotl resolved it on the training host: the dtype training loaded the model in
    (recorded in adapter/config.json) when it is 16-bit, else bf16, which every GPU these recipes target supports.
    The merge host's own capabilities never decide it: merging a bf16 run on a CPU box must not write fp32.
    """
    bf16, fp16 = _flag(cfg.get("bf16")), _flag(cfg.get("fp16"))
    recorded = (model_config or {}).get("dtype") or (model_config or {}).get("torch_dtype")
    if bf16 is True or _flag(cfg.get("bfloat16")) is True:
        return "bfloat16", "bf16: true"
    if fp16 is True or _flag(cfg.get("float16")) is True:
        return "float16", "fp16: true"
    if bf16 == "auto":
        if recorded in ("bfloat16", "float16"):
            return recorded, f"bf16: auto, and training loaded the model in {recorded} (adapter/config.json)"
        return "bfloat16", "bf16: auto (bf16 on the GPUs these recipes train on)"
    return "float32", "bf16 and fp16 off: the run trained in fp32"


def run_training_dtype(run: Run) -> tuple[str, str]:
    config_file = run.adapter / "config.json"
    model_config = json.loads(config_file.read_text()) if config_file.exists() else None
    return training_dtype(run.axolotl_config(), model_config)


def inference_dtype(trained: str, device: str, *, verifying: bool = False) -> tuple[str, str]:
    """(dtype name, reason): the precision a model trained in `trained` runs in on `device`, for eval and serve
    alike: fp32 on CPU (16-bit matmuls are slow there; upcasting loses nothing), else the training dtype, fp16
    for bf16 on a GPU without bf16.

    verifying (`ftr merge`): the training dtype on any device, which the merged checkpoint is stored in: the
    comparison with the adapter model must see that rounding, and its tolerance (ftr.merge_verify) is per dtype.
    """
    trained = trained if trained in DTYPES else "float32"
    if verifying:
        return trained, f"the training dtype, {trained}, which the merged checkpoint is stored in"
    if device == "cpu":
        return "float32", "fp32 on CPU"
    if trained == "bfloat16":
        import torch

        if not torch.cuda.is_bf16_supported():
            return "float16", "bf16 training, but this GPU has no bf16: fp16"
    return trained, f"the training dtype, {trained}"


def pick_device(requested: str = "auto") -> str:
    if requested == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def prefer_offline(base_model: str) -> None:
    """A local base needs no hub: say so before transformers is imported, so nothing waits on the network."""
    if Path(base_model).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def for_generation(tokenizer):
    """A pad token (eos) for padded batches, padding on the left: answers are generated after the prompt."""
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_tokenizer(folder: Path, require_template: bool = True):
    """The tokenizer saved with a model folder (the training one in a run's adapter/ or merged/), with its chat
    template as saved. A run's folder always carries one; require_template=False is for other folders only."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if require_template and not tokenizer.chat_template:
        raise RunError(f"{folder}: the saved tokenizer has no chat template")
    return for_generation(tokenizer)


def _generation_eos(model):
    if isinstance(model, (str, Path)):  # a weights folder: vLLM loads the model itself
        config = Path(model) / "generation_config.json"
        return json.loads(config.read_text()).get("eos_token_id") if config.exists() else None
    return getattr(getattr(model, "generation_config", None), "eos_token_id", None)


def end_of_turn_tokens(end_of_turn: str | None = None) -> tuple[str, ...]:
    """The tokens that end an assistant turn, which a base checkpoint's eos may not be: the run's family's
    (`end_of_turn`: Recipe.end_of_turn), else, for a run without a family, every family's (recipes/families/)."""
    if end_of_turn:
        return (end_of_turn,)
    from ftr.recipes import families, load_family

    return tuple(dict.fromkeys(load_family(name)["end_of_turn"] for name in families()))


def stop_token_ids(tokenizer, model=None, end_of_turn: str | None = None) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos, the end-of-turn tokens (end_of_turn_tokens: the
    family's `end_of_turn`, else every family's) that the tokenizer has as tokens of their own, and the eos of the
    model's generation config (model: a loaded model, or the folder of its weights, or None)."""
    ids = {tokenizer.eos_token_id}
    # Added (special) tokens only: Qwen2.5's vocabulary also has Mistral's "</s>", as ordinary text.
    # (get_added_vocab() is a few entries; get_vocab() would build a 152k-entry dict on every call.)
    added = tokenizer.get_added_vocab()
    ids.update(added[token] for token in end_of_turn_tokens(end_of_turn) if token in added)
    configured = _generation_eos(model)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def decode_attention():
    """A context in which SDPA may use every backend but cuDNN's, for token-by-token decoding.

    On Hopper, torch picks cuDNN's attention for masked SDPA, and cuDNN builds a new execution plan whenever the key
    length changes, which is every decode step: ~1.9 ms of host time per call in a profile. Without it, 100 rows
    of a 7B shape decode in 8.8 s on an H200 instead of 27.9 s (docs/BENCHMARKS.md). Flash and memory-efficient
    attention have no such per-shape cost."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


def context_length(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", None) or 4096)


def _from_pretrained(weights, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    return AutoModelForCausalLM.from_pretrained(str(weights), dtype=getattr(torch, dtype))


def load_model(weights, dtype: str, device: str):
    """A whole model (merged, full fine-tune or base) from a folder or hub id, in `dtype` on `device`."""
    return _from_pretrained(weights, dtype).to(device).eval()


def load_adapter_model(base_model, adapter_dir: Path, dtype: str, device: str, merge: bool = False):
    """The base model in `dtype` with the PEFT adapter applied: on the fly (what training produced: merge
    verification's reference, `ftr serve MODEL=adapter`), or with merge=True folded in memory (eval: generation
    at the base model's speed, no LoRA matmuls per step)."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(_from_pretrained(base_model, dtype), str(adapter_dir))
    return (model.merge_and_unload() if merge else model).to(device).eval()
