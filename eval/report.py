"""What `ftr eval` writes: the recipe's bars checked against the metrics, report.md, and the PNG figures.

Figures use matplotlib's Agg backend (no display): the run's training/eval loss curves from Axolotl's
trainer_state.json, and the confusion matrix of tasks that classify (the rephrase task's is_in_scope).

A bar is a metric path into metrics.json's numbers (`json_valid_rate`, `per_class.false.recall`, `judge.overall`)
and a threshold it must reach; a path ending in `_max` (`perplexity_max`) is an upper bound instead.
"""

import json
from pathlib import Path


def metric_value(metrics: dict, name: str):
    """The number at metric path `name` ("per_class.true.recall"), or None when these metrics do not hold it."""
    value = metrics
    for key in name.split("."):
        if not isinstance(value, dict) or key not in value:
            return None
        value = value[key]
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def check_bars(bars: dict, metrics: dict) -> list[dict]:
    """One row per bar: {bar, metric, threshold, kind (min|max), value, passed (None when not measured)}."""
    results = []
    for name, threshold in bars.items():
        kind = "max" if name.endswith("_max") else "min"
        metric = name.removesuffix("_max") if kind == "max" else name
        value = metric_value(metrics, metric)
        passed = None if value is None else (value <= threshold if kind == "max" else value >= threshold)
        results.append({"bar": name, "metric": metric, "threshold": threshold, "kind": kind, "value": value,
                        "passed": passed})
    return results


def flatten(metrics: dict, prefix: str = "") -> dict:
    """{"per_class": {"true": {"recall": 1}}} -> {"per_class.true.recall": 1}; confusion matrices left out."""
    flat = {}
    for key, value in metrics.items():
        if key == "confusion":
            continue
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        elif isinstance(value, (int, float, str)) and not isinstance(value, bool):
            flat[name] = value
    return flat


def _fmt(value) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.2f}"
    return str(value)


def loss_curves_png(trainer_state: Path | None, out: Path) -> Path | None:
    """Training and eval loss against step from a trainer_state.json; None when there is nothing to plot."""
    if trainer_state is None or not trainer_state.exists():
        return None
    history = json.loads(trainer_state.read_text())["log_history"]
    train = [(row["step"], row["loss"]) for row in history if "loss" in row]
    evals = [(row["step"], row["eval_loss"]) for row in history if "eval_loss" in row]
    if not train and not evals:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for points, label, style in ((train, "train loss", "-"), (evals, "eval loss", "o-")):
        if points:
            ax.plot(*zip(*points), style, label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title("training and eval loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def confusion_png(confusion: dict, out: Path, title: str) -> Path:
    """The is_in_scope confusion matrix: reference class rows, predicted class (or invalid) columns."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = list(confusion)
    cols = list(next(iter(confusion.values())))
    matrix = [[confusion[r][c] for c in cols] for r in rows]
    fig, ax = plt.subplots(figsize=(4.5, 3.5))
    ax.imshow(matrix, cmap="Blues")
    ax.set_xticks(range(len(cols)), [f"pred {c}" for c in cols])
    ax.set_yticks(range(len(rows)), [f"ref {r}" for r in rows])
    top = max(max(row) for row in matrix) or 1
    for i, row in enumerate(matrix):
        for j, count in enumerate(row):
            ax.text(j, i, str(count), ha="center", va="center", color="white" if count > top / 2 else "black")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out


def newest_trainer_state(output_dir: Path) -> Path | None:
    states = sorted(output_dir.glob("**/trainer_state.json"), key=lambda p: p.stat().st_mtime)
    return states[-1] if states else None


def overlap_lines(overlap: dict) -> list[str]:
    """report.md's lines on the scored rows vs the adapter's training rows (a loud warning with --allow-overlap)."""
    if overlap.get("warning"):
        return [f"**WARNING (scored with --allow-overlap): {overlap['warning']}.**", ""]
    if overlap.get("checked"):
        return [f"Overlap with the adapter's training rows: {overlap['overlapping']} of {overlap['scored_rows']} "
                f"scored rows (by prompt, against {overlap['train_rows']} rows of `{overlap['train_rows_file']}`).",
                ""]
    return [f"Overlap with training rows not checked: {overlap['reason']}.", ""] if overlap.get("reason") else []


def markdown(result: dict, figures: list[Path], examples: list[dict]) -> str:
    """report.md: models, bars, the metrics side by side (tuned | base), figures and a few examples."""
    models = result["models"]
    names = list(models)
    lines = [f"# Eval: {result['recipe']} ({result['split']} split, {result['n']} rows)", "",
             f"Command: `{result['command']}`", "", *overlap_lines(result.get("overlap") or {}), "## Models", "",
             "| | weights | adapter | backend | device | dtype | generation s | rows/s | max_new_tokens | cut off |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, model in models.items():
        src, t = model["source"], model["timings_s"]
        lines.append(f"| {name} | `{src['weights']}` | `{src['adapter'] or '–'}` | {src['backend']} | "
                     f"{src['device']} | {src['dtype']} | {t['generate']} | {_fmt(result['n'] / t['generate'])} | "
                     f"{model.get('max_new_tokens', result['max_new_tokens'])} | {model.get('rows_at_cap', '–')} |")
    lines += ["", "## Bars (recipe)", ""]
    if result["bars"]:
        lines += ["| bar | threshold | value (tuned) | result |", "|---|---|---|---|"]
        for bar in result["bars"]:
            verdict = {True: "PASS", False: "FAIL", None: "not measured"}[bar["passed"]]
            sign = "<=" if bar["kind"] == "max" else ">="
            lines.append(f"| {bar['bar']} | {sign} {bar['threshold']} | {_fmt(bar['value'])} | {verdict} |")
    else:
        lines.append("The recipe sets no bars.")
    flat = {name: flatten(models[name]["metrics"]) for name in names}
    keys = list(dict.fromkeys(key for name in names for key in flat[name]))
    lines += ["", "## Metrics", "", "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    lines += [f"| {key} | " + " | ".join(_fmt(flat[name].get(key)) for name in names) + " |" for key in keys]
    if figures:
        lines += ["", "## Figures", ""] + [f"![{path.stem}]({path.name})" for path in figures]
    if examples:
        lines += ["", "## Examples (tuned)", ""]
        for example in examples:
            lines += [f"- **id {example['id']}** prompt: {example['prompt']!r}",
                      f"  - reference: `{example['reference']}`", f"  - prediction: `{example['prediction']}`"]
    return "\n".join(lines) + "\n"
