#!/usr/bin/env python3
"""Golden chat-template fixtures for tests/test_chat.cpp and tests/test_jinja.cpp.

Renders every real chat template in tests/fixtures/chat/templates/ with
transformers' own ``tokenizer.apply_chat_template(messages, tokenize=False,
...)`` and writes what it returns (or the error it raises) to
tests/fixtures/chat/cases.json. The tokenizer is a real
``PreTrainedTokenizerFast`` around a tiny word-level vocabulary carrying the
model's chat_template, bos_token and eos_token, so everything transformers
does around the template (dropping null message keys, aliasing reasoning
fields, passing tools/documents, special tokens as variables) is exercised,
not re-implemented here.

It also writes tests/fixtures/chat/jinja_cases.json: one small template per
Jinja construct qilin supports, rendered by the very Jinja environment
transformers compiles chat templates with
(``transformers.utils.chat_template_utils._compile_jinja_template``).

strftime_now() reads the clock; for reproducible output it is pinned to
FIXED_NOW (the tests pass the same time to qilin).

Usage:  python3 scripts/make_chat_fixtures.py   (transformers 5.x, jinja2 >= 3.1.6)
"""

import copy
import datetime as _dt
import json
import os
import sys

import transformers
import transformers.utils.chat_template_utils as ctu
from tokenizers import Tokenizer, models
from transformers import PreTrainedTokenizerFast

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "tests", "fixtures", "chat")
FIXED_NOW = _dt.datetime(2025, 3, 7, 14, 30, 5)


class _FixedDatetime(_dt.datetime):
    @classmethod
    def now(cls, tz=None):
        return FIXED_NOW


ctu.datetime = _FixedDatetime  # strftime_now() in the compiled templates reads this global


# --------------------------------------------------------------------------- templates

# file -> (bos, eos) for .jinja files; .json configs carry their own.
JINJA_TOKENS = {
    "chat_template.DeepSeek-R1-Distill-Qwen-32B.jinja": ("<｜begin▁of▁sentence｜>", "<｜end▁of▁sentence｜>"),
    "chat_template.Qwen2.5-7B-Instruct.jinja": (None, "<|im_end|>"),
    "chat_template.Qwen3-0.6B.jinja": (None, "<|im_end|>"),
    "chat_template.QwQ-32B.jinja": (None, "<|im_end|>"),
    "chat_template.Llama-3.1-8B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "chat_template.Llama-3.2-3B-Instruct.jinja": ("<|begin_of_text|>", "<|eot_id|>"),
    "chat_template.Mistral-7B-Instruct-v0.1.jinja": ("<s>", "</s>"),
    "chat_template.Mixtral-8x7B-Instruct-v0.1.jinja": ("<s>", "</s>"),
}


def token_content(v):
    if isinstance(v, dict):
        return v.get("content")
    return v


def load_template(name):
    path = os.path.join(FIX, "templates", name)
    with open(path, encoding="utf-8", newline="") as f:
        text = f.read()
    if name.endswith(".json"):
        cfg = json.loads(text)
        return cfg["chat_template"], token_content(cfg.get("bos_token")), token_content(cfg.get("eos_token"))
    bos, eos = JINJA_TOKENS[name]
    return text, bos, eos


def make_tokenizer(template, bos, eos):
    vocab = {"<unk>": 0}
    for t in (bos, eos):
        if t is not None:
            vocab.setdefault(t, len(vocab))
    kwargs = {"tokenizer_object": Tokenizer(models.WordLevel(vocab, unk_token="<unk>")), "chat_template": template}
    if bos is not None:
        kwargs["bos_token"] = bos
    if eos is not None:
        kwargs["eos_token"] = eos
    return PreTrainedTokenizerFast(**kwargs)


# --------------------------------------------------------------------------- conversations

SYS = {"role": "system", "content": "You are a concise assistant."}
U1 = {"role": "user", "content": "What is the capital of France?"}
A1 = {"role": "assistant", "content": "Paris."}
U2 = {"role": "user", "content": "And of Italy?"}

CONV = {
    "multi_turn_system": [SYS, U1, A1, U2],
    "multi_turn": [U1, A1, U2],
    "single_user": [U1],
    "ends_with_assistant": [SYS, U1, A1],
    "unicode": [
        {"role": "system", "content": "你是一个乐于助人的助手。🙂"},
        {"role": "user", "content": "用一句话介绍北京 🏯，再说说 naïve café 的拼写。"},
        {"role": "assistant", "content": "北京是中国的首都 🇨🇳。“naïve café” 带有变音符号。"},
        {"role": "user", "content": "谢谢！😀👍🏽 ‘quotes’ — done"},
    ],
    "whitespace": [
        {"role": "system", "content": "  Be brief.  \n"},
        {"role": "user", "content": "\n\n  Hello there   \n"},
        {"role": "assistant", "content": " \tHi!\n\n"},
        {"role": "user", "content": "line one\nline two\r\n\tindented\n"},
    ],
    "think_history": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "<think>\nSimple arithmetic: 2+2=4.\n</think>\n\nThe answer is 4."},
        {"role": "user", "content": "And 3+3?"},
    ],
    "reasoning_field": [
        {"role": "user", "content": "What is 2+2?"},
        {"role": "assistant", "content": "The answer is 4.", "reasoning_content": "Add two and two."},
        {"role": "user", "content": "And 3+3?"},
    ],
    "null_fields": [
        {"role": "user", "content": "Hi", "name": None},
        {"role": "assistant", "content": "Hello!", "tool_calls": None, "reasoning_content": None},
        {"role": "user", "content": "Bye"},
    ],
    "system_only_then_user": [SYS, {"role": "system", "content": "Answer in French."}, U1],
    "two_users": [U1, U2],
    "system_first_no_user": [SYS],
}

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a city.",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"type": "string", "description": "City name, e.g. 巴黎"},
                "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city"],
        },
    },
}
TIME_TOOL = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a timezone.",
        "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}, "required": ["tz"]},
    },
}


def tool_conv(args_as_string, content=None, two_calls=False, two_results=False):
    args = {"city": "Paris", "unit": "celsius"}
    call = {"id": "call_1", "type": "function",
            "function": {"name": "get_weather", "arguments": json.dumps(args) if args_as_string else args}}
    calls = [call]
    if two_calls:
        targs = {"tz": "Europe/Paris"}
        calls.append({"id": "call_2", "type": "function",
                      "function": {"name": "get_time", "arguments": json.dumps(targs) if args_as_string else targs}})
    conv = [
        {"role": "system", "content": "You can call tools."},
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": content, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"temp": 18, "sky": "clear"}'},
    ]
    if two_results:
        conv.append({"role": "tool", "tool_call_id": "call_2", "name": "get_time", "content": "14:30"})
    conv.append({"role": "assistant", "content": "It is 18°C and clear in Paris."})
    conv.append({"role": "user", "content": "Thanks!"})
    return conv


# --------------------------------------------------------------------------- cases

STANDARD = ["multi_turn_system", "multi_turn", "single_user", "ends_with_assistant", "unicode", "whitespace",
            "think_history", "reasoning_field", "null_fields"]

PLAN = {
    "tokenizer_config.DeepSeek-V3.json": {
        "convs": STANDARD + ["system_only_then_user"],
        "extra": [
            ("tools_content_empty", tool_conv(True, content="", two_calls=True, two_results=True), {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("tools_content_null", tool_conv(True, content=None), {"tools": [WEATHER_TOOL]}),
        ],
    },
    "tokenizer_config.deepseek_v3_tokenizer_zip.json": {
        "convs": STANDARD,
        "extra": [
            ("tools", tool_conv(True, content="", two_calls=True, two_results=True), {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("tools_content_null", tool_conv(True, content=None), {"tools": [WEATHER_TOOL]}),
            ("tools_with_content", tool_conv(True, content="Let me check."), {}),
        ],
    },
    "chat_template.DeepSeek-R1-Distill-Qwen-32B.jinja": {
        "convs": STANDARD,
        "extra": [("tools_content_empty", tool_conv(True, content="", two_results=True), {})],
    },
    "tokenizer_config.Qwen2-1.5B-Instruct.json": {"convs": STANDARD, "extra": []},
    "chat_template.Qwen2.5-7B-Instruct.jinja": {
        "convs": STANDARD,
        "extra": [
            ("tools", tool_conv(False, content=None, two_calls=True, two_results=True), {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("tools_no_system", tool_conv(False, content="Checking.")[1:], {"tools": [WEATHER_TOOL]}),
            ("tools_declared_only", [U1], {"tools": [WEATHER_TOOL]}),
        ],
    },
    "chat_template.Qwen3-0.6B.jinja": {
        "convs": STANDARD,
        "extra": [
            ("enable_thinking_false", CONV["multi_turn_system"], {"enable_thinking": False}),
            ("enable_thinking_true", CONV["multi_turn_system"], {"enable_thinking": True}),
            ("think_history_thinking_false", CONV["think_history"], {"enable_thinking": False}),
            ("think_last_assistant", CONV["think_history"][:2], {}),
            ("tools", tool_conv(False, content="", two_calls=True, two_results=True), {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("tools_content_null", tool_conv(False, content=None), {"tools": [WEATHER_TOOL]}),
            ("tools_string_args", tool_conv(True, content="Sure."), {"tools": [WEATHER_TOOL]}),
        ],
    },
    "chat_template.QwQ-32B.jinja": {
        "convs": STANDARD,
        "extra": [
            ("tools", tool_conv(False, content="", two_calls=True, two_results=True), {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("tools_content_null", tool_conv(False, content=None), {"tools": [WEATHER_TOOL]}),
        ],
    },
    "chat_template.Llama-3.1-8B-Instruct.jinja": {
        "convs": STANDARD,
        "extra": [
            ("date_string", CONV["multi_turn_system"], {"date_string": "07 Mar 2025"}),
            ("tools", tool_conv(False, content=None), {"tools": [WEATHER_TOOL], "date_string": "07 Mar 2025"}),
            ("tools_in_system", tool_conv(False, content=None), {"tools": [WEATHER_TOOL], "tools_in_user_message": False}),
            ("builtin_tools", [
                {"role": "system", "content": "Search when needed."},
                {"role": "user", "content": "Who won?"},
                {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "brave_search", "arguments": {"query": "winner"}}}]},
                {"role": "ipython", "content": "Team A won."},
                {"role": "assistant", "content": "Team A."},
            ], {"builtin_tools": ["brave_search", "code_interpreter", "wolfram_alpha"]}),
            ("tool_result_dict", [
                {"role": "user", "content": "Run it"},
                {"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "get_time", "arguments": {"tz": "UTC"}}}]},
                {"role": "tool", "content": {"time": "12:00", "ok": True}},
            ], {"tools": [TIME_TOOL]}),
            ("error_two_tool_calls", tool_conv(False, content=None, two_calls=True), {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("error_tools_without_user", [SYS], {"tools": [WEATHER_TOOL]}),
        ],
    },
    "chat_template.Llama-3.2-3B-Instruct.jinja": {
        "convs": ["multi_turn_system", "multi_turn", "whitespace"],
        "extra": [("strftime_now_tools", tool_conv(False, content=None), {"tools": [WEATHER_TOOL]})],
    },
    "tokenizer_config.Kimi-K2.json": {
        "convs": STANDARD,
        "extra": [
            ("tools", tool_conv(False, content="I'll check.", two_results=True), {"tools": [WEATHER_TOOL, TIME_TOOL]}),
            ("content_parts", [
                {"role": "user", "content": [{"type": "text", "text": "Describe "}, {"type": "image", "image": "x.png"}, {"type": "text", "text": "this."}]},
            ], {}),
        ],
    },
    "chat_template.Mistral-7B-Instruct-v0.1.jinja": {
        "convs": ["multi_turn", "single_user", "unicode_no_system", "whitespace_no_system",
                  "error_system_first", "error_two_users"],
        "extra": [],
    },
    "chat_template.Mixtral-8x7B-Instruct-v0.1.jinja": {
        "convs": ["multi_turn", "single_user", "error_system_first"],
        "extra": [],
    },
}

CONV["unicode_no_system"] = CONV["unicode"][1:]
CONV["whitespace_no_system"] = CONV["whitespace"][1:]
CONV["error_system_first"] = CONV["multi_turn_system"]
CONV["error_two_users"] = CONV["two_users"]


def render(tok, messages, add_gen, kwargs):
    kw = dict(kwargs)
    tools = kw.pop("tools", None)
    try:
        out = tok.apply_chat_template(copy.deepcopy(messages), tools=tools, tokenize=False,
                                      add_generation_prompt=add_gen, **kw)
        return {"expected": out}
    except Exception as e:  # the template's raise_exception() or a Jinja error
        return {"error": str(e), "error_type": type(e).__name__}


def chat_cases():
    cases = []
    for name, plan in PLAN.items():
        template, bos, eos = load_template(name)
        tok = make_tokenizer(template, bos, eos)
        stem = name.split(".", 1)[1].rsplit(".", 1)[0]
        runs = [(c, CONV[c], {}) for c in plan["convs"]] + list(plan["extra"])
        for conv_name, messages, kwargs in runs:
            for add_gen in (True, False):
                if conv_name.startswith("error_") and not add_gen:
                    continue
                case = {"name": f"{stem}/{conv_name}/{'gen' if add_gen else 'nogen'}",
                        "template": f"templates/{name}", "bos_token": bos, "eos_token": eos,
                        "messages": messages, "add_generation_prompt": add_gen, "kwargs": kwargs}
                case.update(render(tok, messages, add_gen, kwargs))
                if conv_name.startswith("error_") and "error" not in case:
                    sys.exit(f"{case['name']}: expected the template to raise")
                cases.append(case)
    return cases


# --------------------------------------------------------------------------- Jinja constructs

CTX = {"s": "héllo wörld", "n": 7, "f": 2.5, "l": [3, 1, 2], "d": {"b": 1, "a": [1, 2], "items": 5},
       "e": [], "none_v": None, "t": True, "msgs": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}

JINJA = [
    # whitespace control: trim_blocks + lstrip_blocks + explicit -/+
    ("ws_trim_blocks", "{% if t %}\nA\n{% endif %}\nB"),
    ("ws_lstrip_blocks", "x\n    {% if t %}\n    y\n    {% endif %}\nz"),
    ("ws_minus", "a   {%- if t -%}   b   {%- endif -%}   c"),
    ("ws_var_minus", "a \n {{- s -}} \n b"),
    ("ws_var_no_trim", "{{ n }}\n{{ n }}\n"),
    ("ws_plus", "x\n    {%+ if t %}y{% endif +%}\nz"),
    ("ws_comment", "a\n  {# note #}\nb {#- gone -#} c"),
    ("ws_trailing_newline", "line\n"),
    ("ws_crlf", "a\r\n{% if t %}\r\nb\r\n{% endif %}\r\nc"),
    ("raw", "{% raw %}{{ not evaluated }} {% if %}{% endraw %}!"),
    # loops
    ("for_loop_vars", "{% for x in l %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}|{% endfor %}"),
    ("for_else", "{% for x in e %}{{ x }}{% else %}empty{% endfor %}"),
    ("for_items", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}"),
    ("for_dict_keys", "{% for k in d %}{{ k }},{% endfor %}"),
    ("for_filter", "{% for x in l if x > 1 %}{{ x }}:{{ loop.index }}/{{ loop.length }} {% endfor %}"),
    ("for_string", "{% for ch in s %}[{{ ch }}]{% endfor %}"),
    ("for_scope", "{% set x = 1 %}{% for i in l %}{{ x }}{% set x = x + 1 %}{{ x }}{% endfor %}{{ x }}"),
    ("for_nested_loop", "{% for a in l %}{% for b in l %}{{ loop.index }}{% endfor %}{{ loop.index }};{% endfor %}"),
    ("for_break_continue", "{% for x in [1,2,3,4,5] %}{% if x == 2 %}{% continue %}{% endif %}{% if x == 4 %}{% break %}{% endif %}{{ x }}{% endfor %}"),
    ("for_prev_next", "{% for x in l %}{{ loop.previtem | default('-') }}{{ loop.nextitem | default('-') }} {% endfor %}"),
    ("for_reverse_slice", "{% for m in msgs[::-1] %}{{ m.role }} {% endfor %}"),
    # set / namespace / macro
    ("set_namespace", "{% set ns = namespace(c=0, s='') %}{% for x in l %}{% set ns.c = ns.c + x %}{% set ns.s = ns.s ~ x %}{% endfor %}{{ ns.c }} {{ ns.s }}"),
    ("set_tuple", "{% set a, b = 1, 'two' %}{{ a }}{{ b }}"),
    ("set_block", "{% set blk %}inner {{ n }}{% endset %}[{{ blk }}]"),
    ("if_elif_else", "{% for x in [1,2,3] %}{% if x == 1 %}one{% elif x == 2 %}two{% else %}many{% endif %} {% endfor %}"),
    ("macro", "{% macro greet(name, punct='!') %}Hi {{ name }}{{ punct }}{% endmacro %}{{ greet('A') }} {{ greet('B', '?') }} {{ greet(name='C', punct='.') }}"),
    ("generation_block", "a{% generation %}b{{ n }}{% endgeneration %}c"),
    # expressions
    ("arith", "{{ 7 // 2 }} {{ -7 // 2 }} {{ -7 % 3 }} {{ 7 / 2 }} {{ 2 ** 10 }} {{ 4 / 2 }} {{ 1 + 2 * 3 - 4 }} {{ f * 2 }} {{ n - f }}"),
    ("concat_tilde", "{{ 'a' ~ 1 ~ none_v ~ t ~ f }}"),
    ("compare", "{{ 1 == 1.0 }} {{ t == 1 }} {{ 'a' < 'b' }} {{ [1,2] < [1,3] }} {{ n != 7 }} {{ n >= 7 }}"),
    ("logic", "{{ '' or 'x' }} {{ 'a' and 'b' }} {{ not e }} {{ none_v or 0 or 'last' }}"),
    ("in_not_in", "{{ 'é' in s }} {{ 3 in l }} {{ 'a' in d }} {{ 'z' not in d }} {{ 'lo' not in s }}"),
    ("ternary", "{{ 'y' if t else 'n' }} {{ 'y' if e else 'n' }} [{{ 'y' if e }}]"),
    ("subscript_slices", "{{ s[1:3] }} {{ s[-3:] }} {{ s[::-1] }} {{ l[::2] }} {{ l[-1] }} {{ s[0] }} {{ l[1:] }} {{ msgs[-1]['content'] }}"),
    ("attr_and_item", "{{ msgs[0].role }} {{ msgs[0]['content'] }} {{ d['items'] }} {{ d.items()|list }} {{ d.b }}"),
    ("literals", "{{ [1, 'a', none, true, 1.5, {'k': []}] }} {{ (1, 2) }} {{ (1,) }} {{ {'x': 'y'} }} {{ 'it''s' }} {{ \"q\\\"uote\\n\" }}"),
    ("print_values", "{{ none_v }} {{ t }} {{ f }} {{ 1e20 }} {{ 0.1 + 0.2 }} {{ 1e-5 }} {{ 3.0 }} {{ -0.0 }} {{ d }} {{ l }}"),
    ("string_escapes", "{{ 'tab\\there' }}|{{ 'uni\\u00e9\\x41' }}|{{ 'back\\\\slash' }}|{{ 'keep\\d' }}"),
    ("tests", "{{ n is number }} {{ s is string }} {{ d is mapping }} {{ l is iterable }} {{ s is sequence }} {{ none_v is none }} {{ t is boolean }} {{ t is true }} {{ n is odd }} {{ n is divisibleby 7 }} {{ u is defined }} {{ u is undefined }} {{ n is not none }} {{ f is float }} {{ n is integer }} {{ t is integer }}"),
    ("tests_undefined", "{{ u is iterable }} {{ u is sequence }} {{ u is mapping }} {{ u is none }} {{ u is string }}"),
    ("test_equalto", "{{ 'a' is equalto 'a' }} {{ 1 is eq 2 }} {{ 3 is gt 2 }} {{ n is sameas 7 }} {{ none_v is sameas none }}"),
    # undefined semantics
    ("undefined_print", "[{{ u }}] [{{ d.missing }}] [{{ l[10] }}] {{ u == u }} {{ not u }} {{ u|default('dflt') }}"),
    ("undefined_filters", "{{ u|length }} [{{ u|join(',') }}] {{ u|list }} [{{ u|trim }}] [{{ u|string }}] {{ u|items|list }} [{{ u|first }}] [{{ u ~ 'x' }}]"),
    ("undefined_loop", "{% for x in u %}{{ x }}{% else %}none{% endfor %}"),
    ("undefined_attr_error", "{{ u.x }}"),
    ("undefined_add_error", "{{ u + 'x' }}"),
    ("undefined_tojson_error", "{{ u | tojson }}"),
    ("undefined_item_of_missing_key_error", "{{ d.missing.deeper }}"),
    # filters
    ("filter_trim_length", "[{{ '  pad \\n'|trim }}] {{ s|length }} {{ l|count }} {{ d|length }} [{{ 'xxhixx'|trim('x') }}]"),
    ("filter_case", "{{ s|upper }} {{ 'ABC'|lower }} {{ 'hello world'|title }} {{ 'hELLO'|capitalize }}"),
    ("filter_join_first_last", "{{ l|join(', ') }} {{ l|first }} {{ l|last }} {{ s|first }} {{ d|first }} {{ [1,2]|join }}"),
    ("filter_default", "{{ u|default('a') }} {{ ''|default('b') }} {{ ''|default('c', true) }} {{ none_v|default('d') }} {{ u|d('e') }}"),
    ("filter_replace", "{{ s|replace('l', 'L') }} {{ 'aaa'|replace('a', 'b', 2) }}"),
    ("filter_items_list", "{{ d|items|list }} {{ s|list }} {{ (1, 2)|list }}"),
    ("filter_map_select", "{{ msgs|map(attribute='role')|join(',') }} {{ msgs|selectattr('role', 'equalto', 'user')|list }} {{ msgs|rejectattr('role', 'equalto', 'user')|map(attribute='content')|list }} {{ [1,2,3,4]|select('odd')|list }} {{ ['a','b']|reject('equalto', 'a')|list }} {{ l|map('string')|join('-') }}"),
    ("filter_numbers", "{{ '12'|int }} {{ ' 7 '|int }} {{ 'x'|int(5) }} {{ 3.7|int }} {{ '1e3'|float }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.567|round(2) }} {{ 2|round }} {{ -3|abs }} {{ l|sum }}"),
    ("filter_misc", "{{ l|reverse|list }} {{ 'abc'|reverse }} {{ n|string ~ '!' }} {{ '<a>'|safe }} {{ '<a & \"b\">'|e }}"),
    ("filter_tojson", "{{ d|tojson }} | {{ msgs|tojson }} | {{ 'é<>&\\'\"\\n\\t\\u0001'|tojson }} | {{ f|tojson }} | {{ none_v|tojson }} | {{ [t, false]|tojson }}"),
    ("filter_tojson_indent", "{{ d|tojson(indent=2) }}\n{{ {'k': {}, 'e': [], 'n': [1]}|tojson(indent=4) }}"),
    ("filter_tojson_options", "{{ d|tojson(sort_keys=true) }} {{ 'é'|tojson(ensure_ascii=true) }} {{ '😀'|tojson(ensure_ascii=true) }} {{ d|tojson(separators=(',', ':')) }}"),
    # methods
    ("str_methods", "[{{ '  x  '.strip() }}] [{{ 'xxhixx'.strip('x') }}] [{{ '\\n\\na\\n'.lstrip('\\n') }}] [{{ 'a\\n\\n'.rstrip() }}] {{ s.upper() }} {{ s.startswith('hé') }} {{ s.endswith(('x', 'rld')) }} {{ s.replace('l', '_') }}"),
    ("str_split", "{{ '  a b  c '.split() }} {{ '  a b  c '.split(None, 1) }} {{ 'a,b,,c'.split(',') }} {{ 'a,b,,c'.rsplit(',', 1) }} {{ 'x</think>y</think>z'.split('</think>')[-1] }} {{ 'a</think>b'.split('</think>')[0] }}"),
    ("str_misc_methods", "{{ 'hello world'.title() }} {{ 'a-b'.find('-') }} {{ 'aaa'.count('a') }} {{ ','.join(['x', 'y']) }} {{ 'prefix_x'.removeprefix('prefix_') }} {{ '123'.isdigit() }}"),
    ("dict_methods", "{{ d.keys()|list }} {{ d.values()|list }} {{ d.get('b') }} {{ d.get('zz', 'dflt') }} {{ d.get('zz') }}"),
    # globals
    ("global_range_dict", "{{ range(3)|list }} {{ range(1, 10, 4)|list }} {{ dict(a=1, b='x') }}"),
    ("global_raise", "{% if n > 5 %}{{ raise_exception('n is too big: ' ~ n) }}{% endif %}"),
    ("global_strftime", "{{ strftime_now('%d %b %Y') }} {{ strftime_now('%Y-%m-%d %H:%M:%S') }}"),
    ("namespace_underscore_error", "{% set ns = namespace(_x=1) %}"),
    # errors Jinja itself raises
    ("type_error_add", "{{ 'a' + 1 }}"),
    ("unsafe_append_error", "{{ l.append(4) }}"),
    ("zero_division_error", "{{ 1 // 0 }}"),
]


def jinja_cases():
    out = []
    for name, src in JINJA:
        case = {"name": name, "template": src, "context": CTX}
        try:
            case["expected"] = ctu._compile_jinja_template(src).render(**CTX)
        except Exception as e:
            case["error"] = str(e)
            case["error_type"] = type(e).__name__
        out.append(case)
    return out


def main():
    os.makedirs(FIX, exist_ok=True)
    meta = {"transformers": transformers.__version__, "strftime_now": FIXED_NOW.isoformat()}
    import jinja2
    meta["jinja2"] = jinja2.__version__
    chat = chat_cases()
    with open(os.path.join(FIX, "cases.json"), "w", encoding="utf-8") as f:
        json.dump(chat, f, ensure_ascii=False, indent=1)
        f.write("\n")
    jc = jinja_cases()
    with open(os.path.join(FIX, "jinja_cases.json"), "w", encoding="utf-8") as f:
        json.dump(jc, f, ensure_ascii=False, indent=1)
        f.write("\n")
    errors = sum("error" in c for c in chat)
    print(f"transformers {meta['transformers']}, jinja2 {meta['jinja2']}, strftime_now pinned to {meta['strftime_now']}")
    print(f"{len(chat)} chat cases ({errors} expected errors), {len(jc)} jinja cases "
          f"({sum('error' in c for c in jc)} expected errors)")


if __name__ == "__main__":
    main()
