#!/usr/bin/env python3
"""Differential check of qilin's Jinja filters and number formatting against
jinja2 itself, over tricky inputs: Unicode case mappings that expand ('ß' ->
'SS'), final sigma, titlecase digraphs, Python's round (exact decimal value,
half to even), int()/float() parsing (underscores, whitespace, Unicode digits,
inf/nan), negative zero, float repr, repr of strings inside lists.

Renders every case with jinja2 in the environment transformers compiles chat
templates in (ImmutableSandboxedEnvironment, trim_blocks, lstrip_blocks,
loopcontrols, transformers' tojson) and writes
tests/fixtures/chat/jinja_filter_cases.json, which tests/test_jinja.cpp
(JinjaFilter/*) renders with qilin and compares byte for byte. Where Python
would print an int beyond 64 bits the case is marked "unsupported": qilin must
refuse it with QILIN_ERR_UNSUPPORTED (never print a wrapped value).

Usage:  pip install jinja2==3.1.6 && python3 scripts/jinja_filter_diff.py
CI does not need Python: the JSON is checked in.
"""
import json
import os
import re

import jinja2
from jinja2.ext import loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "tests", "fixtures", "chat", "jinja_filter_cases.json")

CASES = {
    # round: Python's round() on the double's exact value, jinja2's ceil/floor
    "round_2_675": "{{ 2.675|round(2) }} {{ 1.005|round(2) }} {{ 0.125|round(2) }} {{ 0.375|round(2) }}",
    "round_half_even": "{{ 2.5|round }} {{ 3.5|round }} {{ (-2.5)|round }} {{ 0.5|round }} {{ (-0.5)|round }} {{ 1.5|round(0) }}",
    "round_negative_digits": "{{ 1234.5678|round(-2) }} {{ 1250.0|round(-2) }} {{ 1350.0|round(-2) }} {{ 123.456|round(-5) }} {{ 500.0|round(-3) }} {{ 501.0|round(-3) }}",
    "round_int": "{{ 7|round }} {{ 7|round(2) }} {{ 15|round(-1) }} {{ 25|round(-1) }} {{ -25|round(-1) }} {{ true|round }}",
    "round_extremes": "{{ 1e300|round(2) }} {{ 1e-300|round(5) }} {{ 0.1|round(20) }} {{ 5e-324|round(400) }} {{ 1.7976931348623157e308|round(-300) }}",
    "round_methods": "{{ 2.675|round(2, 'floor') }} {{ 2.675|round(2, 'ceil') }} {{ (-2.675)|round(2, 'floor') }} {{ 2.1|round(method='ceil') }}",
    # int filter: int(), else int(float()), else the default
    "int_strings": "{{ '42'|int }} {{ ' 42 '|int }} {{ '+42'|int }} {{ '-0'|int }} {{ '1_000'|int }} {{ '1__000'|int }} {{ '_1'|int }} {{ '007'|int }}",
    "int_float_strings": "{{ '42.9'|int }} {{ '-42.9'|int }} {{ '4.2e1'|int }} {{ '1e3'|int }} {{ ' 1.5 '|int }} {{ '.5'|int }}",
    "int_invalid": "{{ 'abc'|int }} {{ ''|int }} {{ ' '|int }} {{ '0x1A'|int }} {{ '0b101'|int }} {{ 'nan'|int }} {{ 'x'|int(7) }} {{ 'x'|int(default='d') }}",
    "int_limits": "{{ '9223372036854775807'|int }} {{ '-9223372036854775808'|int }}",
    "int_beyond_64_bits": "{{ '9223372036854775808'|int }}",
    "int_beyond_64_bits_negative": "{{ '-9223372036854775809'|int }}",
    "int_float_beyond_64_bits": "{{ 1e19|int }}",
    "int_inf": "{{ 'inf'|int }} {{ '-inf'|int(5) }} {{ 'nan'|float|int }}",
    "int_inf_float": ("{{ s|float|int }}", {"s": "inf"}),  # a variable: jinja2 would constant-fold inf
    "int_undefined": "{{ nothing|int }}",
    "int_big_float_string": "{{ '1e19'|int }}",
    "int_values": "{{ 3.99|int }} {{ (-3.99)|int }} {{ true|int }} {{ none|int }} {{ [1]|int }} {{ (-0.0)|int }}",
    "int_unicode_digits": "{{ '\u0663'|int }} {{ '\uff11\uff12'|int }} {{ '\u3000 7\u00a0'|int }}",
    # float filter
    "float_strings": "{{ '1.5'|float }} {{ ' 1.5 '|float }} {{ '1e400'|float }} {{ '-1e400'|float }} {{ 'inf'|float }} {{ 'Infinity'|float }} {{ '-iNF'|float }} {{ 'nan'|float }}",
    "float_invalid": "{{ '1_0.5'|float }} {{ '0x1p3'|float }} {{ '1.5f'|float }} {{ ''|float }} {{ '.5'|float }} {{ '5.'|float }} {{ '1e'|float }} {{ 'x'|float(2) }}",
    "float_values": "{{ none|float }} {{ true|float }} {{ 3|float }} {{ '\u0663.\u0665'|float }}",
    # abs
    "abs": "{{ (-5)|abs }} {{ (-0.0)|abs }} {{ (-9223372036854775807)|abs }} {{ (-1.5)|abs }} {{ false|abs }}",
    "abs_smallest_int": "{{ (-9223372036854775807 - 1)|abs }}",
    "abs_string": "{{ 'x'|abs }}",
    # printing numbers as Python's str/repr
    "float_repr": "{{ 1e16 }} {{ 1e15 }} {{ 0.0001 }} {{ 0.00001 }} {{ -0.0 }} {{ 1/3 }} {{ 2**0.5 }} {{ 1e22 }} {{ 123456789012345678.0 }}",
    "float_repr_extremes": "{{ 5e-324 }} {{ 1.7976931348623157e308 }} {{ 1e308 * 10 }} {{ -(1e308 * 10) }} {{ [0.1, 1e16, -0.0] }}",
    "float_tojson": "{{ [1.0, -0.0, 1e16, 1e-7, 1e308 * 10]|tojson }}",
    "int_arith": "{{ 7 // -2 }} {{ -7 % 3 }} {{ 7.5 // 2 }} {{ -7.5 % 2 }} {{ 2 ** -1 }} {{ 10 / 4 }} {{ 10 / 5 }} {{ (-9223372036854775807 - 1) % -1 }}",
    "int_overflow_add": "{{ 9223372036854775807 + 1 }}",
    "int_overflow_pow": "{{ 2 ** 64 }}",
    "sum_overflow": "{{ [9223372036854775807, 1]|sum }}",
    # case mapping
    "upper_expands": "{{ '\u00df'|upper }} {{ '\ufb01'|upper }} {{ '\u0149'|upper }} {{ '\u01f0'|upper }} {{ '\u0390'|upper }} {{ 'stra\u00dfe'|upper }} {{ '\u1f80'|upper }}",
    "lower_special": "{{ '\u0130stanbul'|lower }} {{ '\u03a3\u0391\u03a3 \u039f\u0394\u039f\u03a3'|lower }} {{ '\u03a3'|lower }} {{ 'A\u03a3'|lower }} {{ 'A\u03a3.'|lower }} {{ '\u01c8'|lower }}",
    "title_filter": "{{ \"they're\"|title }} {{ 'hello world'|title }} {{ '1st place'|title }} {{ \"o'neil mc-donald\"|title }} {{ 'hello\\tworld\\nfoo'|title }} {{ 'a(b)c[d]e{f}g<h>i'|title }}",
    "title_filter_unicode": "{{ '\u00df a'|title }} {{ '\ufb02our'|title }} {{ '\u01c6emal'|title }} {{ '\u00e9COLE \u00e9t\u00e9'|title }}",
    "title_method": "{{ \"they're\".title() }} {{ '1st place'.title() }} {{ '\u00dfa'.title() }} {{ '\u01c6emal'.title() }} {{ 'hello WORLD'.title() }}",
    "capitalize": "{{ 'HELLO wORLD'|capitalize }} {{ '\u01c6emal'|capitalize }} {{ '\u00e9COLE'|capitalize }} {{ '\u00dfa'|capitalize }} {{ ''|capitalize }}",
    # strings
    "trim": "[{{ '  x  '|trim }}] [{{ '\u3000x\u00a0'|trim }}] [{{ 'xxhixx'|trim('x') }}] [{{ '\\t\\n x'|trim }}]",
    "length": "{{ 'h\u00e9llo'|length }} {{ [1, 2]|length }} {{ {'a': 1}|length }} {{ ''|length }} {{ '\U0001f600'|length }}",
    "string_repr": "{{ none|string }} {{ true|string }} {{ 1.0|string }} {{ [1, 'a', none, true, 2.5]|string }} {{ {'a': [1.5]}|string }}",
    "string_repr_quotes": "{{ [\"it's\", 'say \"hi\"', 'both \\' \"', '\\n\\t\\x01', '\u00e9', '\u200b', '\\\\']|string }}",
    "replace": "{{ 'aaa'|replace('a', 'b', 2) }} {{ 'abc'|replace('', '-') }} {{ 'abc'|replace('', '-', 2) }} {{ 'h\u00e9\u00e9'|replace('\u00e9', 'e') }}",
    "join": "{{ [1, 2, 3]|join(', ') }} {{ ['a']|join }} {{ [1, none, 2.5]|join('-') }} {{ 'abc'|join('.') }}",
    "tojson": "{{ {'a': '\u00e9', 'b': [1, 2.5, none, true], 'c': '\\u0001\"\\\\'}|tojson }} {{ 'x'|tojson(indent=2) }} {{ [1, [2]]|tojson(indent=2) }}",
    "default": "{{ none|default('x') }} {{ ''|default('x', true) }} {{ nothing|default('d') }} {{ 0|default(5, true) }} {{ false|d('f') }}",
    "first_last": "{{ [1, 2]|first }} {{ 'abc'|last }} [{{ []|first }}] {{ {'k': 1, 'j': 2}|first }}",
    "list_items": "{{ 'abc'|list }} {{ {'a': 1}|list }} {{ {'a': 1, 'b': 2}|items|list }}",
    "select_map": "{{ [{'a': 1}, {'a': 0}]|selectattr('a')|list }} {{ [{'a': 1}, {'b': 0}]|map(attribute='a')|list }} {{ ['a', 'B']|map('upper')|list }} {{ [1, 2, 3]|select('odd')|list }} {{ [{'a': 1}, {'a': 2}]|rejectattr('a', 'equalto', 1)|list }}",
    "sum_reverse": "{{ [1, 2.5]|sum }} {{ [1, 2]|sum(start=10) }} {{ [3, 1, 2]|reverse|list }} {{ 'h\u00e9llo'|reverse }}",
}

BIG = re.compile(r"-?\d+")


def beyond_int64(text):
    return any(not -(2**63) <= int(m) <= 2**63 - 1 for m in BIG.findall(text))


def environment():
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols])

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env.filters["tojson"] = tojson
    return env


def main():
    env = environment()
    out = []
    for name, tpl in CASES.items():
        tpl, ctx = tpl if isinstance(tpl, tuple) else (tpl, {})
        case = {"name": name, "template": tpl, "context": ctx}
        try:
            text = env.from_string(tpl).render(**ctx)
            if beyond_int64(text):
                case["unsupported"] = "64 bits"
                case["python"] = text
            else:
                case["expected"] = text
        except Exception as e:  # jinja2's error message, which qilin's must contain
            case["error"] = str(e)
        out.append(case)
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("jinja2 %s: %d cases -> %s" % (jinja2.__version__, len(out), os.path.relpath(OUT, ROOT)))


if __name__ == "__main__":
    main()
