#!/usr/bin/env python3
"""serve_openai.py QILIN STORIES TEMPLATE TOOLS_TEMPLATE — `qilin serve` through the official
`openai` Python client (skipped, exit 77, when the package is not installed: `pip install openai`).
Greedy on stories260K: a completion continues the story as `qilin run` does, a streamed chat equals
the same chat not streamed and carries its usage, n=2 choices (streamed by index and not) with
logprobs / top_logprobs (chat and completions) parse, and the client raises the right error class with
the field named for an unknown model (404), a penalty out of range (400), a context overflow
(400, both numbers) and a wrong key (401).
Tools, on a second server with TOOLS_TEMPLATE (a short Hermes-style one that renders tools) and
--tool-call-parser hermes: the tools reach the prompt (more prompt tokens than without), a tool
round trip (an assistant tool_calls message and a tool result) renders and answers, streamed
equals not streamed, and tool_choice "required" is refused naming tool_choice. (stories260K never
writes a tool call: the parsed shapes are asserted by test_serve and test_tool_calls.)

The port is reserved as tests/reserve_ports.py does (bound with SO_REUSEADDR, never listening)."""
import subprocess
import sys

from serve_process import reserve_port, wait_healthy

try:
    import openai
except ImportError:
    print("serve_openai: the openai package is not installed (pip install openai): skipped")
    sys.exit(77)


def check(ok, what):
    if not ok:
        print("serve_openai: FAIL: " + what)
        sys.exit(1)


def expect_error(call, cls, status, param, text=""):
    try:
        call()
    except cls as e:
        body = e.body or {}
        check(e.status_code == status and body.get("param") == param and text in body.get("message", ""),
              "%s: %r" % (cls.__name__, body))
        return
    check(False, "no %s raised" % cls.__name__)


def start(qilin, stories, template, max_len, extra=()):
    hold, port = reserve_port()
    server = subprocess.Popen([qilin, "serve", "--model", stories, "--port", str(port), "--dtype", "float32",
                               "--max-num-seqs", "2", "--max-model-len", str(max_len), "--api-key", "sk-test",
                               "--served-model-name", "stories", "--chat-template", template] + list(extra))
    try:
        wait_healthy(server, port, lambda why: check(False, why))
    except SystemExit:
        server.terminate()
        raise
    return server, hold, openai.OpenAI(base_url="http://127.0.0.1:%d/v1" % port, api_key="sk-test", max_retries=0)


WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "The weather in a city",
                                            "parameters": {"type": "object",
                                                           "properties": {"city": {"type": "string"}}}}}


def tools(qilin, stories, template):
    server, hold, c = start(qilin, stories, template, 512, ["--tool-call-parser", "hermes"])
    try:
        ask = [{"role": "user", "content": "Weather in Paris?"}]
        plain = c.chat.completions.create(model="stories", messages=ask, max_tokens=4, temperature=0)
        r = c.chat.completions.create(model="stories", messages=ask, max_tokens=4, temperature=0, tools=[WEATHER])
        check(r.usage.prompt_tokens > plain.usage.prompt_tokens + 10, "tools not in the prompt: %r vs %r" %
              (r.usage, plain.usage))
        check(r.choices[0].finish_reason in ("stop", "length") and not r.choices[0].message.tool_calls,
              "stories wrote a tool call? %r" % r.choices[0])
        trip = ask + [{"role": "assistant", "content": None, "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny, 21 C"}]
        whole = c.chat.completions.create(model="stories", messages=trip, max_tokens=4, temperature=0, tools=[WEATHER])
        check(whole.usage.prompt_tokens > r.usage.prompt_tokens, "the tool round trip is not in the prompt")
        parts, tool_deltas = [], []
        for ch in c.chat.completions.create(model="stories", messages=trip, max_tokens=4, temperature=0,
                                            tools=[WEATHER], tool_choice="auto", stream=True):
            if ch.choices:
                parts.append(ch.choices[0].delta.content or "")
                tool_deltas += ch.choices[0].delta.tool_calls or []
        check("".join(parts) == (whole.choices[0].message.content or "") and not tool_deltas,
              "streamed %r vs %r" % (parts, whole))
        expect_error(lambda: c.chat.completions.create(model="stories", messages=ask, tools=[WEATHER],
                                                       tool_choice="required"),
                     openai.BadRequestError, 400, "tool_choice", "constrained decoding")
        bad_tool = {"type": "function", "function": {"name": "no spaces please"}}
        expect_error(lambda: c.chat.completions.create(model="stories", messages=ask, tools=[bad_tool]),
                     openai.BadRequestError, 400, "tools[0].function.name")
    finally:
        server.terminate()
        server.wait()


def main():
    qilin, stories, template, tools_template = sys.argv[1:5]
    server, hold, c = start(qilin, stories, template, 128)
    try:
        check([m.id for m in c.models.list()] == ["stories"], "models")
        r = c.completions.create(model="stories", prompt="Once upon a time", max_tokens=8, temperature=0)
        check(", there was a little girl".startswith(r.choices[0].text[:25]) and r.usage.prompt_tokens == 5 and
              r.usage.completion_tokens == 8, "completion %r %r" % (r.choices[0].text, r.usage))
        msgs = [{"role": "user", "content": "Tell me about a cat."}]
        parts, usage = [], None
        for ch in c.chat.completions.create(model="stories", messages=msgs, max_tokens=5, temperature=0,
                                            stream=True, stream_options={"include_usage": True}):
            if ch.choices:
                parts.append(ch.choices[0].delta.content or "")
            if ch.usage:
                usage = ch.usage
        whole = c.chat.completions.create(model="stories", messages=msgs, max_tokens=5, temperature=0)
        check("".join(parts) == whole.choices[0].message.content, "streamed %r vs %r" % (parts, whole))
        check(usage is not None and usage.completion_tokens == whole.usage.completion_tokens and
              usage.prompt_tokens == whole.usage.prompt_tokens, "usage %r vs %r" % (usage, whole.usage))
        # n = 2 with logprobs: both greedy choices equal, each token with its 2 alternatives (the first itself)
        two = c.chat.completions.create(model="stories", messages=msgs, max_tokens=4, temperature=0, n=2,
                                        logprobs=True, top_logprobs=2, presence_penalty=0.5)
        check([ch.index for ch in two.choices] == [0, 1] and
              two.choices[0].message.content == two.choices[1].message.content, "n=2: %r" % two)
        for ch in two.choices:
            lps = ch.logprobs.content
            check(len(lps) >= 1 and all(len(t.top_logprobs) == 2 and t.top_logprobs[0].token == t.token and
                                        t.logprob <= 0 for t in lps), "logprobs %r" % lps)
        check(two.usage.completion_tokens == 2 * len(two.choices[0].logprobs.content) or
              two.choices[0].finish_reason == "stop", "n=2 usage %r" % two.usage)
        by_index = {0: "", 1: ""}
        for ch in c.chat.completions.create(model="stories", messages=msgs, max_tokens=4, temperature=0, n=2,
                                            logprobs=True, stream=True):
            for choice in ch.choices:
                by_index[choice.index] += choice.delta.content or ""
        check(by_index[0] == by_index[1] == two.choices[0].message.content, "streamed n=2 %r" % by_index)
        cl = c.completions.create(model="stories", prompt="Once upon a time", max_tokens=3, temperature=0, logprobs=2)
        check("".join(cl.choices[0].logprobs.tokens) == cl.choices[0].text and
              len(cl.choices[0].logprobs.top_logprobs) == 3, "completion logprobs %r" % cl.choices[0].logprobs)
        hi = [{"role": "user", "content": "Hi"}]
        expect_error(lambda: c.chat.completions.create(model="nope", messages=hi), openai.NotFoundError, 404, "model")
        expect_error(lambda: c.chat.completions.create(model="stories", messages=hi, presence_penalty=2.5),
                     openai.BadRequestError, 400, "presence_penalty", "out of range")
        expect_error(lambda: c.chat.completions.create(model="stories", messages=hi, max_tokens=500),
                     openai.BadRequestError, 400, "max_tokens", "maximum context length is 128 tokens")
        bad = openai.OpenAI(base_url=str(c.base_url), api_key="wrong", max_retries=0)
        expect_error(lambda: bad.models.list(), openai.AuthenticationError, 401, None)
    finally:
        server.terminate()
        server.wait()
    tools(qilin, stories, tools_template)
    print("serve_openai: completions, streamed chat, usage, 4 errors and tools through openai %s" % openai.__version__)


if __name__ == "__main__":
    main()
