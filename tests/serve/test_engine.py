"""The generation engine: text handed out as it grows (never half a character, never the start of a stop string),
the max_tokens cap, stop strings, and the deadlines and hangups that free the model. Slow tests use the merged
tiny model."""

import threading
import time

import pytest

from ftr.serving.engine import ClientGone, Engine, GenerationTimeout, Params, _Answer


class PieceTokenizer:
    """Decodes ids to fixed pieces; ids 10 then 11 make 'é', 10 alone is an unfinished UTF-8 character."""

    PIECES = {1: "xin", 2: " ch", 3: "ST", 4: "OP", 5: " nữa", 11: ""}

    def decode(self, ids, skip_special_tokens=True):
        text = ""
        for i, token in enumerate(ids):
            if token == 10:
                text += "é" if i + 1 < len(ids) and ids[i + 1] == 11 else "\ufffd"
            else:
                text += self.PIECES[token]
        return text


def follow(tokens, stops=(), stop_ids=(99,)):
    deltas = []
    answer = _Answer(PieceTokenizer(), stop_ids, list(stops), deltas.append)
    for token in tokens:
        answer.add(token)
    answer.flush(final=True)
    return answer, deltas


def test_deltas_add_up_to_the_text_and_never_split_a_character():
    answer, deltas = follow([1, 2, 10, 11, 5])
    assert "".join(deltas) == answer.text == "xin ché nữa"
    assert not any("\ufffd" in d for d in deltas)


def test_a_stop_string_is_cut_and_never_streamed_in_part():
    answer, deltas = follow([1, 3, 4, 5], stops=["STOP"])
    assert answer.text == "xin" and answer.ended
    assert "".join(deltas) == "xin" and not any("ST" in d for d in deltas)


def test_end_of_turn_ends_the_answer():
    answer, deltas = follow([1, 99, 2])
    assert answer.text == "xin" and answer.ended and answer.count == 3


@pytest.fixture(scope="module")
def engine(merged_tiny_rephrase):
    from ftr import inference

    folder = merged_tiny_rephrase / "merged"
    tokenizer = inference.load_tokenizer(folder)
    model = inference.load_model(folder, "float32", "cpu")
    return Engine(model, tokenizer, inference.stop_token_ids(tokenizer, model), max_tokens_cap=12, timeout_s=30,
                  context_length=inference.context_length(model))


MESSAGES = [{"role": "user", "content": "bỉm cho bé sơ sinh"}]


@pytest.mark.slow
def test_streamed_text_equals_the_answer_and_the_cap_holds(engine):
    ids = engine.encode(MESSAGES)
    deltas = []
    done = engine.generate(ids, Params(max_tokens=1000), time.monotonic() + 30, on_text=deltas.append)
    assert "".join(deltas) == done.text
    assert done.finish_reason == "length" and done.completion_tokens == 12
    assert done.prompt_tokens == len(ids)
    again = engine.generate(ids, Params(max_tokens=5), time.monotonic() + 30)
    assert again.completion_tokens == 5 and done.text.startswith(again.text)


@pytest.mark.slow
def test_stop_string(engine):
    ids = engine.encode(MESSAGES)
    full = engine.generate(ids, Params(), time.monotonic() + 30).text
    stop = full.strip()[-3:]
    cut = engine.generate(ids, Params(stop=[stop]), time.monotonic() + 30)
    assert cut.text == full[:full.find(stop)] and cut.finish_reason == "stop"


@pytest.mark.slow
def test_deadline_during_generation_raises_and_frees_the_model(engine):
    ids = engine.encode(MESSAGES)
    with pytest.raises(GenerationTimeout, match="ran past"):
        engine.generate(ids, Params(), time.monotonic())
    assert engine.generate(ids, Params(max_tokens=2), time.monotonic() + 30).completion_tokens == 2


@pytest.mark.slow
def test_deadline_while_queued_raises(engine):
    ids = engine.encode(MESSAGES)
    engine._lock.acquire()
    try:
        start = time.monotonic()
        with pytest.raises(GenerationTimeout, match="no model time"):
            engine.generate(ids, Params(), time.monotonic() + 0.3)
        assert time.monotonic() - start < 5
    finally:
        engine._lock.release()


@pytest.mark.slow
def test_cancel_stops_generation(engine):
    ids = engine.encode(MESSAGES)
    cancel = threading.Event()
    with pytest.raises(ClientGone, match="generation stopped after"):  # hung up once it held the model
        engine.generate(ids, Params(max_tokens=1000), time.monotonic() + 30, on_start=cancel.set, cancel=cancel)
    assert engine.generate(ids, Params(max_tokens=2), time.monotonic() + 30).completion_tokens == 2


def test_a_request_waiting_for_the_model_leaves_as_soon_as_its_client_is_gone():
    engine = Engine(None, None, [], max_tokens_cap=4, timeout_s=30, context_length=100)  # the model is never reached
    engine._lock.acquire()  # someone else generates
    try:
        cancel = threading.Event()
        threading.Timer(0.2, cancel.set).start()
        start = time.monotonic()
        with pytest.raises(ClientGone, match="waiting for the model"):
            engine.generate([1], Params(), time.monotonic() + 30, cancel=cancel)
        assert time.monotonic() - start < 5  # not the 30 s deadline
        with pytest.raises(ClientGone):  # already gone: not even a try for the lock
            engine.generate([1], Params(), time.monotonic() + 30, cancel=cancel)
    finally:
        engine._lock.release()
    with pytest.raises(ClientGone):  # gone while the model was free: no generation either
        engine.generate([1], Params(), time.monotonic() + 30, cancel=cancel)
    assert engine._lock.acquire(blocking=False)
