"""The official `openai` package against the OCG gateway: non-streaming and
streaming, with a named session. Exits non-zero on any mismatch."""
import os
import sys

from openai import OpenAI

client = OpenAI(base_url=os.environ["OCG_URL"] + "/v1", api_key=os.environ["OCG_TOKEN"])

models = client.models.list()
assert len(models.data) >= 1, models

reply = client.chat.completions.create(
    model="ocg",
    messages=[{"role": "user", "content": "hello from python"}],
)
text = reply.choices[0].message.content
assert text == "echo: hello from python", text
assert reply.choices[0].finish_reason == "stop", reply
assert reply.usage.total_tokens > 0, reply.usage

parts = []
usage = None
stream = client.chat.completions.create(
    model="ocg",
    messages=[{"role": "user", "content": "stream please"}],
    stream=True,
    stream_options={"include_usage": True},
    user="py-session",
)
for chunk in stream:
    if chunk.usage is not None:
        usage = chunk.usage
    for choice in chunk.choices:
        if choice.delta.content:
            parts.append(choice.delta.content)
assert "".join(parts) == "echo: stream please", parts
assert usage is not None and usage.total_tokens > 0, usage

try:
    OpenAI(base_url=os.environ["OCG_URL"] + "/v1", api_key="wrong").chat.completions.create(
        model="ocg", messages=[{"role": "user", "content": "x"}]
    )
    sys.exit("a wrong key was accepted")
except Exception as error:  # openai.AuthenticationError
    assert getattr(error, "status_code", None) == 401, error

print("openai package: ok")
