"""`python -m ftr.prep CONFIG`: Axolotl's own `axolotl preprocess`, without three costs that are not tokenisation.

Axolotl's chat_template tokenisation itself is unchanged (same strategy, same masks, same prepared dataset); this
module only removes overhead around it, measured in docs/BENCHMARKS.md (## Data preparation):

1. Fingerprints. Every `Dataset.map`/`filter` hashes its function with dill to name a cache file. Axolotl's
   tokenise function holds the tokenizer, and a transformers 5 tokenizer keeps its 151k-entry vocab and 294k
   merges as Python objects, so each hash pickles ~1.2 M objects (~1 s per map here, more per worker).
   `axolotl preprocess` runs with datasets caching disabled, so those hashes name nothing. We hash a tokenizer
   by a digest of its backend JSON (the vocab and merges, exactly) plus its small Python state instead: still
   content-derived, ~0.15 s once.
2. Saving. Axolotl calls `save_to_disk(num_proc>=1)`; datasets then writes through a *spawn* pool whose child
   re-imports the caller's `__main__` (torch, Axolotl, bitsandbytes: ~10-20 s) and receives the whole table by
   pickle. Writing in-process takes a fraction of a second at these sizes, with the same shards.
3. The meta-device model "pre-download" at the end of preprocess is skipped when `base_model` is a local folder
   (nothing to download; it only re-reads the checkpoint's index).

Set FTR_PREP_PLAIN=1 to run Axolotl's preprocess untouched (for comparison).
"""

import hashlib
import os
import pickle
import sys
from pathlib import Path

_DIGESTS: dict = {}


def _tokenizer_by_digest(digest):  # pragma: no cover - only ever pickled by reference, never called
    raise RuntimeError("a hashing stand-in, not a tokenizer")


def _backend_digest(tok) -> str:
    backend = tok.__dict__.get("_tokenizer")
    if backend is None or not hasattr(backend, "to_str"):
        return ""
    key = (id(tok), id(backend), repr(getattr(backend, "truncation", None)), repr(getattr(backend, "padding", None)),
           backend.get_vocab_size(with_added_tokens=True))
    if key not in _DIGESTS:
        _DIGESTS[key] = hashlib.sha256(backend.to_str().encode("utf-8")).hexdigest()
    return _DIGESTS[key]


def _save_tokenizer(pickler, obj):
    """dill reducer used only for hashing: the tokenizer as (class, backend digest, small state)."""
    state = {k: v for k, v in obj.__dict__.items()
             if k not in ("_vocab", "_merges", "_tokenizer", "cache", "deprecation_warnings")}
    try:
        small = pickle.dumps(sorted(state.items(), key=lambda kv: kv[0]), protocol=4)
    except Exception:
        small = repr(sorted(state.items(), key=lambda kv: kv[0])).encode()
    digest = hashlib.sha256(f"{type(obj).__module__}.{type(obj).__qualname__}|{_backend_digest(obj)}".encode()
                            + small).hexdigest()
    pickler.save_reduce(_tokenizer_by_digest, (digest,), obj=obj)


def fast_tokenizer_fingerprints() -> None:
    """Make datasets' fingerprint hashing of tokenizers cheap (and still content-derived)."""
    from datasets.utils import _dill
    from transformers import PreTrainedTokenizerBase

    if getattr(_dill.Pickler.save, "_ftr_patched", False):
        return
    original = _dill.Pickler.save

    def save(self, obj, save_persistent_id=True):
        obj_type = type(obj)
        if obj_type not in self.dispatch and isinstance(obj, PreTrainedTokenizerBase):
            _dill.pklregister(obj_type)(_save_tokenizer)
        return original(self, obj, save_persistent_id=save_persistent_id)

    save._ftr_patched = True
    _dill.Pickler.save = save


def in_process_save() -> None:
    """`Dataset.save_to_disk` without its spawn pool (same shards, written by this process)."""
    from datasets import Dataset

    if getattr(Dataset.save_to_disk, "_ftr_patched", False):
        return
    original = Dataset.save_to_disk

    def save_to_disk(self, dataset_path, max_shard_size=None, num_shards=None, num_proc=None, storage_options=None):
        if num_shards is None and num_proc:
            num_shards = num_proc  # keep the shard count the pool would have written
        return original(self, dataset_path, max_shard_size=max_shard_size, num_shards=num_shards, num_proc=None,
                        storage_options=storage_options)

    save_to_disk._ftr_patched = True
    Dataset.save_to_disk = save_to_disk


def apply() -> None:
    fast_tokenizer_fingerprints()
    in_process_save()


def _local_base_model(config: str) -> bool:
    import yaml

    try:
        base = yaml.safe_load(Path(config).read_text(encoding="utf-8")).get("base_model", "")
    except Exception:
        return False
    return bool(base) and Path(base).expanduser().is_dir()


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if os.environ.get("FTR_PREP_PLAIN") != "1":
        apply()
        if argv and not any(a.startswith("--download") for a in argv) and _local_base_model(argv[0]):
            argv.append("--download=False")
    import fire
    from axolotl.cli.preprocess import do_cli

    sys.argv = [sys.argv[0]] + argv  # HfArgumentParser inside do_cli reads sys.argv too
    fire.Fire(do_cli, command=argv)


if __name__ == "__main__":
    main()
