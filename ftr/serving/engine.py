"""One model, one request at a time: chat-template the messages, generate under a lock with a deadline, and hand
out the text as it grows (for streaming), cut at stop strings.

The lock is the concurrency story: requests queue on it, each generation runs alone (correct results over
throughput on CPU), and a deadline bounds both the wait for the lock and the generation itself. A cancel Event
(set when the client hangs up) ends either one early.
"""

import threading
import time
from dataclasses import dataclass, field

from ftr import inference
from ftr.inference import GREEDY


class GenerationTimeout(TimeoutError):
    """The request's deadline passed while it waited for the model or while it generated."""


class ClientGone(Exception):
    """The request's client hung up: the request left the queue, or its generation stopped."""


POLL_S = 0.05  # how soon a request waiting for the model notices that its client hung up


class PromptTooLong(ValueError):
    """The chat-templated prompt leaves no room to generate within the model's context."""


@dataclass
class Params:
    max_tokens: int | None = None
    temperature: float = 0.0  # 0 = greedy
    top_p: float = 1.0
    stop: list[str] = field(default_factory=list)
    seed: int | None = None


@dataclass
class Completion:
    text: str
    finish_reason: str  # "stop" (end of turn or a stop string) or "length" (max_tokens)
    prompt_tokens: int
    completion_tokens: int


class _Answer:
    """Follows the generated tokens: decoded text cut at the first stop string, and the part safe to send so far
    (held back: an unfinished UTF-8 character, and anything that could still become a stop string)."""

    def __init__(self, tokenizer, stop_ids, stops, on_text):
        self.tokenizer, self.stop_ids, self.stops, self.on_text = tokenizer, set(stop_ids), stops, on_text
        self.ids: list[int] = []
        self.text, self.sent = "", 0
        self.count = 0
        self.ended = False  # end-of-turn token or stop string

    def add(self, token_id: int) -> None:
        self.count += 1
        if self.ended:
            return
        if token_id in self.stop_ids:
            self.ended = True
            return
        self.ids.append(token_id)
        text = self.tokenizer.decode(self.ids, skip_special_tokens=True)
        cuts = [i for i in (text.find(s) for s in self.stops) if i >= 0]
        if cuts:
            text, self.ended = text[:min(cuts)], True
        self.text = text
        self.flush(final=self.ended)

    def flush(self, final: bool = False) -> None:
        if self.on_text is None:
            return
        end = len(self.text)
        if not final:
            end -= max((len(s) - 1 for s in self.stops), default=0)
            while end > self.sent and self.text[end - 1] == "\ufffd":
                end -= 1
        if end > self.sent:
            self.on_text(self.text[self.sent:end])
            self.sent = end


class Engine:
    """A loaded model and its training tokenizer, generating one request at a time."""

    def __init__(self, model, tokenizer, stop_ids: list[int], *, max_tokens_cap: int, timeout_s: float,
                 context_length: int):
        self.model, self.tokenizer, self.stop_ids = model, tokenizer, stop_ids
        self.max_tokens_cap, self.timeout_s, self.context_length = max_tokens_cap, timeout_s, context_length
        self._lock = threading.Lock()

    def encode(self, messages: list[dict]) -> list[int]:
        """The training chat template applied server-side, with the assistant header to answer after."""
        ids = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                 return_dict=False)
        if len(ids) >= self.context_length:
            raise PromptTooLong(f"the prompt is {len(ids)} tokens; the model's context is {self.context_length}")
        return ids

    def generate(self, prompt_ids: list[int], params: Params, deadline: float, *, on_start=None, on_text=None,
                 cancel: threading.Event | None = None) -> Completion:
        """Generate an answer; on_text(delta) gets the text as it grows. Raises GenerationTimeout past deadline,
        ClientGone once `cancel` is set."""
        self._take_model(deadline, cancel)
        try:
            if on_start is not None:
                on_start()
            return self._generate(prompt_ids, params, deadline, on_text, cancel)
        finally:
            self._lock.release()

    def _take_model(self, deadline: float, cancel: threading.Event | None) -> None:
        # Polled so that a waiting request leaves as soon as its client is gone, not when the model frees up.
        gone = cancel.is_set if cancel is not None else lambda: False
        while not gone():
            if self._lock.acquire(timeout=min(POLL_S, max(0.0, deadline - time.monotonic()))):
                if not gone():
                    return
                self._lock.release()  # gone while it waited: no prefill for nobody
                break
            if time.monotonic() >= deadline:
                raise GenerationTimeout(f"no model time within {self.timeout_s:g} s: earlier requests still "
                                        "generating")
        raise ClientGone("the client hung up while waiting for the model")

    def _generate(self, prompt_ids, params, deadline, on_text, cancel) -> Completion:
        import torch
        from transformers import GenerationConfig, StoppingCriteria, StoppingCriteriaList
        from transformers.generation.streamers import BaseStreamer

        room = self.context_length - len(prompt_ids)
        max_tokens = min(params.max_tokens or self.max_tokens_cap, self.max_tokens_cap, room)
        answer = _Answer(self.tokenizer, self.stop_ids, params.stop, on_text)
        timed_out = threading.Event()

        class Follow(BaseStreamer):
            prompt_seen = False

            def put(self, value):
                if not self.prompt_seen:  # generate() first hands over the prompt
                    self.prompt_seen = True
                    return
                for token in value.reshape(-1).tolist():
                    answer.add(token)

            def end(self):
                pass

        class Watch(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                if time.monotonic() > deadline:
                    timed_out.set()
                stop = answer.ended or timed_out.is_set() or (cancel is not None and cancel.is_set())
                return torch.full((input_ids.shape[0],), stop, dtype=torch.bool, device=input_ids.device)

        sampling = params.temperature > 0
        options = dict(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=0,
                       repetition_penalty=1.0) if sampling else GREEDY
        config = GenerationConfig(max_new_tokens=max_tokens, eos_token_id=self.stop_ids,
                                  pad_token_id=self.tokenizer.pad_token_id, **options)
        if sampling and params.seed is not None:
            torch.manual_seed(params.seed)
        input_ids = torch.tensor([prompt_ids], device=self.model.device)
        with torch.inference_mode(), inference.decode_attention():
            self.model.generate(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                                generation_config=config, streamer=Follow(),
                                stopping_criteria=StoppingCriteriaList([Watch()]))
        if timed_out.is_set() and not answer.ended:
            raise GenerationTimeout(f"generation ran past the {self.timeout_s:g} s timeout "
                                    f"({answer.count} tokens generated)")
        if cancel is not None and cancel.is_set() and not answer.ended:
            raise ClientGone(f"the client hung up; generation stopped after {answer.count} tokens")
        answer.flush(final=True)
        return Completion(answer.text, "stop" if answer.ended else "length", len(prompt_ids), answer.count)
