"""Evaluation: score prediction files, generate and score a trained recipe, judge answers with an LLM, time it.

- metrics: pure scoring functions (strings in, numbers out) for the rephrase JSON task and free text.
- rows: reading reference and prediction JSONL files and pairing them.
- generation: loading a trained run's model (its base, dtype and chat template), batched greedy generation, the
  seed-style loop, perplexity.
- overlap: the scored rows checked against the adapter's training rows (by a hash of each prompt).
- evaluate: `ftr eval`'s pipeline (split -> answers -> scores -> files under build/<id>/eval/).
- staging: outputs only when complete: PID-named temp folders (dead owners' cleaned up), atomic files.
- report: the recipe's bars checked, report.md and the PNG figures.
- judge: LLM-as-judge over any OpenAI-compatible endpoint with seed 004's rubric.
- bench: `python -m ftr.eval.bench`, batched greedy vs the seed's one-at-a-time sampling loop.
- cli: the `ftr score`, `ftr eval` and `ftr judge` click commands.
"""
