"""Request and response shapes of the server: OpenAI chat completions, the rephrase task's /predict, the
rephrase output schema a model answer must match to be returned as JSON, and the error body every failure gets.
"""

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from starlette.responses import JSONResponse

MAX_STOP_SEQUENCES = 4


def error(status: int, message: str, kind: str, headers: dict | None = None, **extra) -> JSONResponse:
    """OpenAI's error shape: {"error": {"message", "type", ...extra}}."""
    return JSONResponse({"error": {"message": message, "type": kind, **extra}}, status_code=status, headers=headers)


class TextPart(BaseModel):
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def as_template_message(self) -> dict:
        """{role, content} for the chat template: text parts joined, OpenAI's `developer` read as `system`."""
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": "system" if self.role == "developer" else self.role, "content": content}


class StreamOptions(BaseModel):
    include_usage: bool = False


class ChatCompletionRequest(BaseModel):
    """OpenAI's /v1/chat/completions body; fields this server has no use for (user, logit_bias, ...) are ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    n: int = Field(1, ge=1, le=1, description="One choice per request: the model is served one request at a time.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None
    seed: int | None = None

    @field_validator("stop")
    @classmethod
    def _stop_sequences(cls, value):
        stops = [value] if isinstance(value, str) else list(value or [])
        if len(stops) > MAX_STOP_SEQUENCES or any(not s for s in stops):
            raise ValueError(f"stop takes at most {MAX_STOP_SEQUENCES} non-empty strings")
        return stops


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    query: str = Field(min_length=1, max_length=4000)

    @field_validator("query")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("query is blank")
        return value


class RephraseOutput(BaseModel):
    """What the rephrase model must answer: exactly these five fields, with these JSON types."""

    model_config = ConfigDict(extra="forbid", strict=True)

    keyword: str
    is_in_scope: bool
    reasoning: str
    message_banner: str
    message_no_result: str


class InvalidModelOutput(ValueError):
    """The model's answer is not the JSON object the task promises; `problems` lists why."""

    def __init__(self, message: str, problems: list[str]):
        super().__init__(message)
        self.problems = problems


def parse_rephrase(text: str) -> dict:
    """The model's answer as the validated rephrase object, or InvalidModelOutput saying what is wrong."""
    try:
        value = json.loads(text.strip())
    except json.JSONDecodeError as exc:
        raise InvalidModelOutput("model output is not valid JSON", [str(exc)]) from None
    try:
        return RephraseOutput.model_validate(value).model_dump()
    except ValidationError as exc:
        problems = [f"{'.'.join(str(p) for p in err['loc']) or '(root)'}: {err['msg']}" for err in exc.errors()]
        raise InvalidModelOutput("model output does not match the rephrase schema", problems) from None
