"""`python -m ftr.prep CONFIG`: Axolotl's own `axolotl preprocess`, without costs that are not tokenisation.

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
4. One-worker pools. datasets 4 runs `map`/`filter` with `num_proc=1` (the recipes' default) in a pool of one
   forked worker plus a Manager process, sending the worker the tokenizer by pickle: ~5 s of the tokenising pass for
   2,000 rows here, and a pool per pass. They run in-process instead (same single shard, same rows).
5. Unused imports. bitsandbytes (imported by peft, ~1 s here and CUDA set-up on a GPU host) is imported lazily;
   transformers is told scikit-learn, scipy and torchao are absent (it imports them only for generation,
   detection losses and torchao checkpoints: ~2 s); the scan of installed distributions that transformers and trl
   each make at import is done once.
6. Teardown. After a successful run the atexit handlers run (logs flushed, temporary files removed) and the process
   exits without the interpreter's module-by-module teardown (~4.5 s here).

Tokens are unchanged: tests/test_prep.py compares the prepared Arrow files of this and of plain Axolotl byte for
byte. FTR_PREP_PLAIN=1 runs Axolotl's preprocess untouched (for comparison); FTR_PREP_TIMINGS=FILE writes the time
of each phase (imports, config, tokenizer, dataset_load, tokenise, filters, packing, save) there as JSON.
"""

import functools
import hashlib
import importlib.abc
import importlib.util
import json
import os
import pickle
import sys
import time
from pathlib import Path

_STARTED = time.perf_counter()
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


def in_process_single_worker() -> None:
    """`Dataset.map`/`filter` with `num_proc=1` run in this process, as with `num_proc=None`.

    datasets 4 starts a pool for any `num_proc >= 1`: a forked worker plus a Manager process per pass, and the
    worker is sent the map function by dill pickle, i.e. Axolotl's tokenise function with the whole tokenizer
    (~5 s for the first batch of 2,000 rows here). One worker does the same work as this process, on the same single
    shard, so the rows come out the same. A function that asks for its rank keeps the pool (it would see None, not
    0); `filter` asks `map` for ranks on its own account, so it is rewritten at its own entry.
    """
    from datasets import Dataset

    for name in ("map", "filter"):
        original = getattr(Dataset, name)
        if getattr(original, "_ftr_patched", False):
            continue

        def one_worker_in_process(self, *args, _original=original, **kwargs):
            if kwargs.get("num_proc") == 1 and not kwargs.get("with_rank"):
                kwargs["num_proc"] = None
            return _original(self, *args, **kwargs)

        wrapped = functools.wraps(original)(one_worker_in_process)
        wrapped._ftr_patched = True
        setattr(Dataset, name, wrapped)


class _LazyTopLevel(importlib.abc.MetaPathFinder):
    """Import the named packages with importlib's LazyLoader: `import x` binds a module that runs on first use.

    Only a first attribute access executes the package, so code that imports it and never touches it (peft's
    `import bitsandbytes as bnb` at module level) no longer pays for it, while any real use gets the real package.
    """

    def __init__(self, names):
        self.names = frozenset(names)

    def find_spec(self, name, path=None, target=None):
        if name not in self.names:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                    spec.loader = importlib.util.LazyLoader(spec.loader)
                return spec
        return None


# Imported on preprocess's path, not used by it (see the module docstring); lazy, so still there if anything does.
LAZY_PACKAGES = ("bitsandbytes",)


def lazy_imports(names=LAZY_PACKAGES) -> None:
    if not any(isinstance(f, _LazyTopLevel) for f in sys.meta_path):
        sys.meta_path.insert(0, _LazyTopLevel(name for name in names if name not in sys.modules))


# What transformers imports at start-up only for features a preprocess never reaches: scikit-learn (with scipy's
# and pandas' share: ~1.7 s) for assisted generation's `roc_curve`, scipy for detection losses, torchao for loading
# torchao-quantized checkpoints (preprocess loads no model; a failed pre-download is only a warning).
NOT_FOR_PREPROCESS = ("sklearn", "scipy", "torchao")


def hide_from_transformers(names=NOT_FOR_PREPROCESS) -> None:
    """transformers imports these only `if is_<name>_available()`; answer False in this process."""
    import transformers.utils
    import transformers.utils.import_utils as import_utils

    def absent(*_args, **_kwargs) -> bool:
        return False

    for name in names:
        for module in (import_utils, transformers.utils):
            setattr(module, f"is_{name}_available", absent)


def one_distribution_scan() -> None:
    """transformers and trl each call `importlib.metadata.packages_distributions()` at import, a scan of every
    installed distribution's file list (~0.5 s each here); nothing is installed mid-run, so scan once."""
    import importlib.metadata as metadata

    if getattr(metadata.packages_distributions, "_ftr_patched", False):
        return
    scan = functools.lru_cache(maxsize=1)(metadata.packages_distributions)

    def packages_distributions():
        return {name: list(dists) for name, dists in scan().items()}  # a copy per caller, as before

    packages_distributions._ftr_patched = True
    metadata.packages_distributions = packages_distributions


def apply() -> None:
    lazy_imports()
    one_distribution_scan()
    hide_from_transformers()
    fast_tokenizer_fingerprints()
    in_process_save()
    in_process_single_worker()


def _local_base_model(config: str) -> bool:
    import yaml

    try:
        base = yaml.safe_load(Path(config).read_text(encoding="utf-8")).get("base_model", "")
    except Exception:
        return False
    return bool(base) and Path(base).expanduser().is_dir()


# (module, function, phase) timed when FTR_PREP_TIMINGS names a file; each is looked up where preprocess calls it
PHASES = (
    ("axolotl.cli.preprocess", "load_cfg", "config"),
    ("axolotl.common.datasets", "load_tokenizer", "tokenizer"),
    ("axolotl.utils.data.sft", "load_dataset_with_config", "dataset_load"),
    ("axolotl.utils.data.sft", "get_dataset_wrapper", "tokenise"),
    ("axolotl.utils.data.sft", "handle_long_seq_in_dataset", "filters"),
    ("axolotl.utils.data.sft", "process_datasets_for_packing", "packing"),
    ("axolotl.utils.data.sft", "save_preprocessed_dataset", "save"),
    ("axolotl.cli.preprocess", "do_preprocess", "preprocess"),
)


def _time_phases(times: dict) -> None:
    import importlib

    for module_name, name, phase in PHASES:
        module = importlib.import_module(module_name)
        original = getattr(module, name)

        def timed(*args, _original=original, _phase=phase, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                times[_phase] = round(times.get(_phase, 0.0) + time.perf_counter() - start, 3)

        setattr(module, name, functools.wraps(original)(timed))


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    times_file = os.environ.get("FTR_PREP_TIMINGS")
    times: dict = {}
    if os.environ.get("FTR_PREP_PLAIN") != "1":
        apply()
        if argv and not any(a.startswith("--download") for a in argv) and _local_base_model(argv[0]):
            argv.append("--download=False")
    import fire
    from axolotl.cli.preprocess import do_cli

    times["imports"] = round(time.perf_counter() - _STARTED, 3)
    if times_file:
        _time_phases(times)
    sys.argv = [sys.argv[0]] + argv  # HfArgumentParser inside do_cli reads sys.argv too
    fire.Fire(do_cli, command=argv)
    if times_file:
        times["in_process"] = round(time.perf_counter() - _STARTED, 3)
        Path(times_file).write_text(json.dumps(times), encoding="utf-8")


def _exit_without_teardown() -> None:
    """Run the atexit handlers (logging's flush, datasets' temporary files), then leave without the interpreter's
    teardown of every module and object, which took ~4.5 s after a finished preprocess here."""
    import atexit
    import threading

    for thread in threading.enumerate():  # what the interpreter would wait for before atexit
        if thread is not threading.main_thread() and not thread.daemon:
            thread.join()
    atexit._run_exitfuncs()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()
    if os.environ.get("FTR_PREP_PLAIN") != "1":
        _exit_without_teardown()
