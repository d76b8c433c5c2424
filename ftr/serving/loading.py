"""Load what `ftr train` left under build/<id>/ for inference: the training dtype, the training tokenizer, the
base model with its PEFT adapter (unmerged) and the merged model.

The tokenizer always comes from the saved model folder (adapter/ or merged/): Axolotl saved it there with the
chat template it trained with, so prompts at inference are formatted exactly as in training.
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
# Qwen's end of turn, which a base checkpoint's eos may not be.
END_OF_TURN_TOKENS = ("<|im_end|>",)


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


def pick_device(requested: str = "auto") -> str:
    import torch

    if requested == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return requested


def prefer_offline(base_model: str) -> None:
    """A local base needs no hub: say so before transformers is imported, so nothing waits on the network."""
    if Path(base_model).exists():
        os.environ.setdefault("HF_HUB_OFFLINE", "1")


def load_tokenizer(folder: Path):
    """The tokenizer saved with a model folder, with a pad token for batched/padded generation."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    if not tokenizer.chat_template:
        raise RunError(f"{folder}: the saved tokenizer has no chat template")
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def load_adapter_model(base_model: str, adapter_dir: Path, dtype: str, device: str):
    """The base model in `dtype` with the PEFT adapter applied on the fly (not merged): what training produced."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    base = AutoModelForCausalLM.from_pretrained(base_model, dtype=getattr(torch, dtype))
    return PeftModel.from_pretrained(base, str(adapter_dir)).to(device).eval()


def load_merged_model(folder: Path, dtype: str, device: str):
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging

    logging.disable_progress_bar()
    return AutoModelForCausalLM.from_pretrained(str(folder), dtype=getattr(torch, dtype)).to(device).eval()


def stop_token_ids(tokenizer, model=None) -> list[int]:
    """Token ids that end an answer: the tokenizer's eos, the end-of-turn token, the model's configured eos."""
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    ids.update(vocab[token] for token in END_OF_TURN_TOKENS if token in vocab)
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def context_length(model) -> int:
    return int(getattr(model.config, "max_position_embeddings", None) or 4096)


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


def serving_dtype(trained: str, device: str) -> str:
    """The training dtype on a GPU; fp32 on CPU, where 16-bit matmuls are slow (upcasting loses nothing)."""
    return trained if device != "cpu" else "float32"
