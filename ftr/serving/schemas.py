"""Request and response shapes of the server: OpenAI chat completions and the error body every failure gets.
/predict's request and answer schemas are its task's (ftr.tasks.rephrase: PredictRequest, Output, parse_answer).
"""

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
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
