"""ftr.converters: the front door for user data files.

`lint` checks a rephrase / chat / instruct file (JSON array or JSONL) and names every problem by file, line and
record; `convert` turns it into Axolotl `chat_template` rows with deterministic train/val/test splits and a
manifest. Modules: reading (bytes -> records with line numbers), text (encoding repair), formats (pure per-record
checks and conversion), pipeline (one streaming pass shared by both), lint, convert, splits,
cli. Their benchmark is ftr.bench.convert.
"""
