"""LLM-as-judge with seed 004's rubric, over any OpenAI-compatible endpoint (POST {url}/v1/chat/completions).

Each prediction is graded 1-5 on accuracy, completeness, fluency and professionalism (plus overall) against its
reference by the judge model, with seed 004's Chinese prompt. A malformed reply (or a failed request) is retried
once, then the row is counted as a failure: a bad judge never stops the run, but `rejection` decides whether its
result may stand. A judging run replaces judge.json only when at most MAX_FAILURE_RATE of its rows failed: the
averages of the rows that were judged say little when many were not (a timeout hits long answers first).
"""

import json
import math
from concurrent.futures import ThreadPoolExecutor

from ftr.tasks.text_metrics import extract_first_object

# Seed 004's judge prompt, verbatim (its rubric and the JSON it asks for).
JUDGE_PROMPT = """请评估AI助手的回答质量。

问题: {question}

参考答案: {reference}

待评估回答: {candidate}

请从以下维度评分(1-5)：
1. 准确性 - 信息是否正确
2. 完整性 - 是否完整回答问题
3. 流畅性 - 语言是否通顺
4. 专业性 - 是否体现领域知识

返回JSON格式：
{{"accuracy": X, "completeness": X, "fluency": X, "professionalism": X, "overall": X, "reasoning": "..."}}
"""
SCORES = ("accuracy", "completeness", "fluency", "professionalism", "overall")
ATTEMPTS = 2  # the first try and one retry
MAX_FAILURE_RATE = 0.1


class JudgeReplyError(ValueError):
    """A judge reply that is not the JSON verdict the rubric asks for."""


def judge_prompt(question: str, reference: str, candidate: str) -> str:
    return JUDGE_PROMPT.format(question=question, reference=reference, candidate=candidate)


def parse_verdict(text: str) -> dict:
    """The judge's scores (numbers from 1 to 5) and reasoning, from the first JSON object in its reply."""
    verdict = extract_first_object(text or "")
    if verdict is None:
        raise JudgeReplyError(f"no JSON object in the judge's reply: {(text or '')[:200]!r}")
    scores = {}
    for name in SCORES:
        value = verdict.get(name)
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 1 <= value <= 5:
            raise JudgeReplyError(f"{name!r} is {verdict.get(name)!r}, not a score from 1 to 5")
        scores[name] = float(value)
    reasoning = verdict.get("reasoning", "")
    return {"scores": scores, "reasoning": reasoning if isinstance(reasoning, str) else json.dumps(reasoning)}


def chat_url(url: str) -> str:
    """{url}/v1/chat/completions, whether or not url already ends in /v1."""
    return url.rstrip("/").removesuffix("/v1") + "/v1/chat/completions"


class Judge:
    """A judge model behind an OpenAI-compatible chat completions endpoint."""

    def __init__(self, url: str, model: str, api_key: str | None = None, timeout: float = 120.0,
                 max_tokens: int | None = None):
        import httpx

        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = chat_url(url)
        self.model = model
        self.max_tokens = max_tokens
        self.client = httpx.Client(headers=headers, timeout=timeout)

    def ask(self, prompt: str) -> str:
        """The judge's reply text to one user prompt (raises on HTTP errors and unexpected response shapes)."""
        request = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": 0,
            "response_format": {"type": "json_object"},
        }
        if self.max_tokens:
            request["max_tokens"] = self.max_tokens
        response = self.client.post(self.url, json=request)
        response.raise_for_status()
        return response.json()["choices"][0]["message"]["content"]

    def grade(self, question: str, reference: str, candidate: str) -> dict:
        """{"scores", "reasoning", "attempts", "error"}: scores None when every attempt failed."""
        import httpx

        prompt = judge_prompt(question, reference, candidate)
        error = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                return {**parse_verdict(self.ask(prompt)), "attempts": attempt, "error": None}
            except (JudgeReplyError, httpx.HTTPError, KeyError, IndexError, TypeError, ValueError) as exc:
                error = f"{type(exc).__name__}: {exc}"[:500]
        return {"scores": None, "reasoning": None, "attempts": ATTEMPTS, "error": error}

    def close(self):
        self.client.close()


def judge_rows(judge: Judge, items: list[dict], concurrency: int = 4, progress: bool = True) -> dict:
    """Grade items ({"id", "question", "reference", "prediction"}); per-row verdicts, averages and failures."""
    from tqdm import tqdm

    def grade(item):
        return {**item, **judge.grade(item["question"], item["reference"], item["prediction"])}

    with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
        rows = list(tqdm(pool.map(grade, items), total=len(items), desc="judge", unit="row", disable=not progress))
    graded = [row for row in rows if row["scores"] is not None]
    averages = {name: sum(row["scores"][name] for row in graded) / len(graded) for name in SCORES} if graded else None
    return {"n": len(rows), "judged": len(graded), "failures": len(rows) - len(graded),
            "retried": sum(row["attempts"] > 1 for row in rows), "averages": averages, "rows": rows}


def rejection(result: dict, max_failure_rate: float = MAX_FAILURE_RATE) -> str | None:
    """Why a judge_rows result must not become judge.json (None when it may): nothing judged, every judgement
    failed, or more than max_failure_rate of them."""
    n, failures = result["n"], result["failures"]
    if n == 0:
        return "nothing to judge (no prediction pairs with a reference)"
    first_error = next((row["error"] for row in result["rows"] if row["scores"] is None), None)
    if result["judged"] == 0:
        return f"every judgement failed ({failures} of {n} rows; first error: {first_error})"
    if failures / n > max_failure_rate:
        return (f"{failures} of {n} judgements failed ({failures / n:.0%}, more than the {max_failure_rate:.0%} "
                f"allowed by --max-failures; first error: {first_error})")
    return None
