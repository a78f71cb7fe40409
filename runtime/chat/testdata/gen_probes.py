"""Generates probes.json: small templates rendered by Jinja2 in the environment
transformers uses for chat templates (see render.py; SPEC.md section 4.4).

Run from this directory: python3 gen_probes.py   (tested with Python 3, Jinja2 3.1.6).
Also writes strftime.json: datetime.strftime outputs for a few dates and formats.
Each probe is {name, template, vars, output} or {..., error} when the
template calls raise_exception. The Go tests render the same template with
the same vars (JSON, key order kept) and must produce the same bytes.
"""
import datetime
import json
import random

import jinja2.ext
from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

NOW = datetime.datetime(2026, 8, 22, 14, 5, 9, 123456)


def raise_exception(m):
    raise TemplateError(m)


def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
    return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


class Generation(jinja2.ext.Extension):
    """transformers' AssistantTracker, reduced to rendering its body."""
    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.CallBlock(self.call_method("_support"), [], [], body).set_lineno(lineno)

    def _support(self, caller):
        return caller()


P = []


def p(name, tpl, **v):
    P.append({"name": name, "template": tpl, "vars": v})


M = [{"role": "system", "content": "S"}, {"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]
TOOL = {"type": "function", "function": {"name": "get_weather", "description": "Weather <now> & 'later'",
        "parameters": {"type": "object", "properties": {"loc": {"type": "string", "description": "City, é"}},
                       "required": ["loc"]}}}

# tojson is json.dumps(ensure_ascii=False): key order kept, no HTML escaping.
p("tojson_basic", "{{ x|tojson }}", x={"b": 1, "a": [1, 2.5, True, None, "é<>&'\"\\\n\t\r\b\f\x01\x7f\u2028😀"], "c": {"z": 0, "y": -3}})
p("tojson_indent", "{{ x|tojson(indent=4) }}", x=TOOL)
p("tojson_indent2", "{{ x|tojson(indent=2) }}", x=[1, [2, {"a": None}], "s", {}, []])
p("tojson_indent_str", "{{ x|tojson(indent='\\t') }}", x={"a": [1]})
p("tojson_scalars", "{{ 'a\"b'|tojson }}|{{ 3|tojson }}|{{ none|tojson }}|{{ true|tojson }}|{{ 2.5|tojson }}")
p("tojson_float", "{{ x|tojson }}", x=[1.0, 0.1, 1e20, 1.5e-7, 100.0, -0.0, 3, 1e16, 1e15, 123456789.125, 0.0001, 0.00001, -2.5e-300])
p("tojson_sep", "{{ x|tojson(separators=(',', ':')) }}", x={"a": [1, 2], "b": "c"})
p("tojson_sort", "{{ x|tojson(sort_keys=true) }}", x={"b": 1, "a": {"d": 1, "c": 2}})
p("tojson_ascii", "{{ x|tojson(ensure_ascii=true) }}", x=["é😀\u2028", "\x7f"])
p("tojson_template_values", "{{ {'k': [1, 'two', none, false]}|tojson }}")
p("tools_loop", "{% for t in tools %}{{ t|tojson(indent=4) }}\n\n{% endfor %}", tools=[TOOL, {"type": "function", "function": {"name": "f", "parameters": {}}}])

# Printing values.
p("print_values", "{{ true }} {{ false }} {{ 1.0 }} {{ 2 }} {{ [1, 'a'] }} {{ {'k': 'v'} }} {{ 1/2 }} {{ 7//2 }} {{ 7%3 }} {{ 1e20 }} {{ 0.1 }}")
p("print_undef", "[{{ nope }}][{{ m.nope }}][{{ m['nope'] }}]", m={"a": 1})

# str methods.
p("str_methods", "{{ s.strip() }}|{{ s.lstrip() }}|{{ s.rstrip() }}|{{ s.upper() }}|{{ s.lower() }}|{{ s.title() }}|{{ s.strip().capitalize() }}", s="  hello wORLD-foo bar\n")
p("str_methods2", "{{ s.startswith('ab') }} {{ s.endswith('yz') }} {{ s.split(',') }} {{ s.split(',')[1] }} {{ s.replace('b','B') }} {{ s.replace('b','B',1) }} {{ s.find('c') }} {{ s.rfind('b') }} {{ s.find('q') }} {{ s.count('b') }}", s="ab,cb,xyz")
p("str_affix_tuple", "{{ s.startswith(('x', 'ab')) }} {{ s.endswith(('q', 'r')) }} {{ s.startswith('b', 1) }}", s="abc")
p("str_split_ws", "{{ s.split() }} {{ s.split(none, 1) }} {{ s.rsplit(' ', 1) }} {{ s.rsplit(none, 1) }} {{ s.split(' ') }} {{ ''.split() }} {{ 'a,b,,c'.split(',', 2) }}", s=" a  b c ")
p("str_strip_chars", "{{ s.strip('\\n') }}|{{ s.lstrip('x') }}|{{ s.rstrip('\\n') }}|{{ s.strip('xb\\n') }}", s="x\nab\n\n")
p("str_join", "{{ ', '.join(l) }}|{{ '-'.join('abc') }}", l=["a", "b"])
p("think_split", "{{ c.split('</think>')[-1].lstrip('\\n') }}|{{ c.split('<think>')[1].split('</think>')[0].strip() }}", c="<think>\nabc\n</think>\n\nAnswer")
p("str_slice", "{{ s[1:] }}|{{ s[:-1] }}|{{ s[::-1] }}|{{ s[0] }}|{{ s[-1] }}|{{ s[1:4:2] }}", s="héllo")
p("unicode_methods", "{{ s.upper() }} {{ s|length }} {{ s.title() }} {{ s|upper }} {{ s.capitalize() }}", s="ßtraße élan")
p("title_cases", "{{ s.title() }}|{{ s|title }}|{{ s|capitalize }}", s="they're bill's friends from the UK. x1y a_b (c-d)")
p("str_predicates", "{{ '12'.isdigit() }} {{ 'ab'.isalpha() }} {{ 'AB'.isupper() }} {{ ' '.isspace() }} {{ 'abc'.removeprefix('a') }}")

# Filters.
p("filters_str", "{{ s|trim }}|{{ s|upper }}|{{ s|lower }}|{{ s|title }}|{{ s|capitalize }}|{{ s|length }}|{{ s|replace('l','L') }}|{{ s|trim('h ') }}", s=" heLLo world ")
p("filters_list", "{{ l|length }} {{ l|first }} {{ l|last }} {{ l|join(', ') }} {{ l|reverse|list }} {{ l|sort }} {{ l|unique|list }} {{ 'abc'|reverse }} {{ l|count }}", l=["b", "a", "c", "a"])
p("selectattr", "{{ m|selectattr('role','equalto','user')|list|length }} {{ m|map(attribute='role')|join(',') }} {{ m|rejectattr('role','equalto','system')|map(attribute='content')|list }}", m=M)
p("selectattr_defined", "{{ m|selectattr('tool_calls','defined')|list|length }}", m=[{"role": "a"}, {"role": "b", "tool_calls": []}])
p("reject_equalto", "{{ l|reject('equalto','x')|join(', ') }}", l=["x", "y", "z"])
p("items_filter", "{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}", d={"z": 1, "a": "two", "m": [3]})
p("dictsort", "{% for k, v in d|dictsort %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d|dictsort(reverse=true) %}{{ k }};{% endfor %}", d={"b": 1, "A": 2, "c": 0})
p("dict_methods", "{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}{{ d.keys()|list }}{{ d.values()|list }}{{ d.get('z') }}{{ d.get('q','dflt') }}", d={"z": 1, "a": "two"})
p("default_filter", "{{ nope|default('d') }} {{ e|default('d') }} {{ e|default('d', true) }} {{ v|d('x') }}", e="", v="v")
p("int_float_filters", "{{ '3'|int + 1 }} {{ 3|float }} {{ 2.5|round }} {{ 3.5|round }} {{ 2.567|round(2) }} {{ 2.561|round(2, 'floor') }} {{ 2.561|round(1, 'ceil') }} {{ -3|abs }} {{ '5'|int * 2 }} {{ 3|string ~ 'x' }}")
p("string_filter_list", "{{ l|string }} {{ l|join }}", l=[1, "a"])
p("list_aggregates", "{{ [3,1,2]|max }} {{ [3,1,2]|min }} {{ [1,2]|sum }}")
p("indent_filter", "{{ s|indent(2) }}|{{ s|indent(2, true) }}", s="a\nb\n\nc")
p("wordcount_batch", "{{ 'a b  c'|wordcount }}")

# Control flow.
p("slice_messages", "{% for m in messages[1:] %}{{ m.role }}{% endfor %}|{{ messages[-1].content }}|{{ (messages|last).role }}|{{ messages[:1]|length }}|{{ messages[::-1][0].role }}", messages=M)
p("loop_vars", "{% for m in messages %}{{ loop.index }}{{ loop.index0 }}{{ loop.first }}{{ loop.last }}{{ loop.length }}{{ loop.revindex }}{{ loop.revindex0 }};{% endfor %}", messages=M)
p("loop_prev", "{% for m in messages %}{% if loop.previtem is defined %}{{ loop.previtem.role }}{% endif %}<{{ m.role }}>{% endfor %}", messages=M)
p("loop_cycle", "{% for i in range(4) %}{{ loop.cycle('a', 'b') }}{% endfor %}")
p("loopcontrols", "{% for i in range(10) %}{% if i == 2 %}{% continue %}{% endif %}{% if i == 5 %}{% break %}{% endif %}{{ i }}{% endfor %}")
p("for_else", "{% for x in l %}{{ x }}{% else %}empty{% endfor %}", l=[])
p("for_if", "{% for x in l if x > 1 %}{{ x }}{% endfor %}", l=[1, 2, 3])
p("for_dict", "{% for k in d %}{{ k }};{% endfor %}", d={"b": 1, "a": 2})
p("namespace", "{% set ns = namespace(found=false, n=0) %}{% for m in messages %}{% if m.role == 'system' %}{% set ns.found = true %}{% endif %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.found }} {{ ns.n }}", messages=M)
p("scoping", "{% set x = 1 %}{% for i in [1,2] %}{% set x = x + i %}{% endfor %}{{ x }}")
p("defined_tests", "{{ a is defined }} {{ b is defined }} {{ b is not defined }} {{ d.k is defined }} {{ d.q is defined }} {{ d['k'] is defined }} {{ a is string }} {{ d is mapping }} {{ l is iterable }} {{ a is iterable }} {{ d is iterable }} {{ 3 is number }} {{ 3 is integer }} {{ l is sequence }} {{ a is sequence }} {{ 2.0 is float }} {{ l is mapping }} {{ a is none }}", a="s", d={"k": 1}, l=[1])
p("none_tests", "{{ n is none }} {{ n is not none }} {{ n == none }} {{ none == none }}", n=None)
p("in_op", "{{ 'a' in 'cat' }} {{ 'k' in d }} {{ 'q' in d }} {{ 2 in l }} {{ 'tool_calls' in m }} {{ 'x' not in l }} {{ 'role' in m }}", d={"k": 1}, l=[1, 2], m={"role": "a"})
p("tilde", "{{ 'a' ~ 1 ~ true ~ 2.5 }}|{{ 'a' + 'b' }}|{{ 1 + 2 }}|{{ [1] + [2] }}|{{ 'x' * 3 }}")
p("cond_expr", "{{ 'y' if a else 'n' }}{{ 'y' if b else 'n' }}{{ 'y' if c }}|", a=True, b=False, c=False)
p("bool_logic", "{{ a and b }} {{ a or b }} {{ not a }} {{ '' or 'x' }} {{ [] or 'e' }} {{ not b }}", a=True, b=False)
p("truthiness", "{% for x in vals %}{{ 'T' if x else 'F' }}{% endfor %}", vals=["", "a", 0, 1, [], [0], {}, {"a": 1}, None, 0.0, False])
p("comparisons", "{{ 1 < 2 }} {{ 'a' < 'b' }} {{ 1 == 1.0 }} {{ 'a' != 'b' }} {{ l == [1,2] }} {{ 2 >= 3 }} {{ 1 < 2 < 3 }}", l=[1, 2])
p("macro", "{% macro render(m, sep='|') %}{{ m.role }}{{ sep }}{{ m.content }}{% endmacro %}{% for m in messages %}{{ render(m) }}{{ render(m, sep=':') }}{% endfor %}", messages=M)
p("macro_recursion", "{% macro fact(n) %}{% if n <= 1 %}1{% else %}{{ n * fact(n - 1)|int }}{% endif %}{% endmacro %}{{ fact(6) }}")
p("macro_caller", "{% macro wrap(tag) %}<{{ tag }}>{{ caller() }}</{{ tag }}>{% endmacro %}{% call wrap('b') %}x{{ 1 + 1 }}{% endcall %}")
p("set_block", "{% set x %}A{{ 1 }}B{% endset %}[{{ x }}]")
p("filter_block", "{% filter upper %}abc{{ 'd' }}{% endfilter %}")
p("range_fn", "{{ range(3)|list }} {{ range(1,7,2)|list }} {{ range(5,0,-2)|list }} {{ range(0)|list }}")
p("dict_literal", "{% set d = {'a': 1, 'b': [1,2]} %}{{ d.a }}{{ d['b'][1] }}{{ d|length }}{{ dict(x=1).x }}")
p("nested_attr_item", "{{ d['a']['b'] }} {{ d.a.b }} {{ d.l[0].x }} {{ d['l'][0]['x'] }}", d={"a": {"b": "c"}, "l": [{"x": 5}]})
p("tuple_loop", "{% for a, b in [[1,2],[3,4]] %}{{ a }}{{ b }};{% endfor %}")
p("length_dict_str", "{{ d|length }} {{ 'abc'|length }} {{ d|count }}", d={"a": 1, "b": 2})
p("string_mult", "{{ '-' * 3 }}{{ '=' * n }}", n=2)
p("escape_in_strings", "{{ 'a\\tb\\\\c\\'d' }}|{{ \"x\\\"y\" }}")
p("int_division_index", "{{ messages[(messages|length) - 1].role }} {{ messages|length % 2 }} {{ (messages|length) // 2 }}", messages=M)
p("is_eq", "{{ 'a' is eq 'a' }} {{ 1 is odd }} {{ 2 is even }} {{ 'A' is upper }} {{ 'a' is lower }} {{ 3 is divisibleby 3 }}")
p("raw_block", "{% raw %}{{ x }}{% endraw %}")
p("generation_tag", "{% for m in messages %}{% if m.role == 'assistant' %}{% generation %}{{ m.content }}{% endgeneration %}{% else %}[{{ m.content }}]{% endif %}{% endfor %}", messages=M)

# Whitespace control with trim_blocks and lstrip_blocks.
p("whitespace_trim", "A\n{% if true %}\n  B\n{% endif %}\n  {% if true %}C{% endif %}\nD {{ 'x' }}\n  E\n{%- if true %} F {% endif -%}\n G\n{%+ if true %}H{% endif %}\n")
p("whitespace_lstrip", "<\n    {% for i in [1,2] %}\n    item{{ i }}\n    {% endfor %}\n>\n  {# c #}\n  z\n\t{% if true %}t{% endif %}\n")
p("whitespace_expr_no_trim", "a {{ 'b' }}\n  {{ 'c' }}  \nd\n")
p("crlf_source", "a\r\n{% if true %}\r\nb\r\n{% endif %}\r\nc")

# Globals.
p("strftime", "{{ strftime_now('%d %b %Y') }}|{{ strftime_now('%B %d, %Y') }}|{{ strftime_now('%Y-%m-%d %H:%M:%S') }}|{{ strftime_now('%A %a %j %y %p %I %f') }}|{{ strftime_now('%-d %-m %e %c %x %X %D %F %T %R %r') }}|{{ strftime_now('%U %W %V %G %u %w %C %z %Z %% %q %^a %k %l %P') }}")
p("bos_eos", "{{ bos_token }}x{{ eos_token }}", bos_token="<s>", eos_token="</s>")
p("raise", "{% for m in messages %}{% if m.role not in ['user', 'assistant'] %}{{ raise_exception('Conversation roles must be user/assistant, got ' + m.role) }}{% endif %}{{ m.content }}{% endfor %}", messages=M)
p("raise_in_macro", "{% macro f() %}{{ raise_exception('inside macro') }}{% endmacro %}x{{ f() }}")

# Message shapes seen in real templates.
p("msg_content_iterable", "{% for m in messages %}{% if m.content is mapping or m.content is iterable %}{{ m.content|tojson }}{% else %}{{ m.content }}{% endif %};{% endfor %}", messages=[{"role": "tool", "content": "plain text"}, {"role": "tool", "content": {"temp": 20, "unit": "C"}}, {"role": "tool", "content": [1]}, {"role": "tool", "content": 5}])
p("content_parts", "{% for m in messages %}{% if m.content is string %}{{ m.content }}{% else %}{% for c in m.content %}{% if c.type == 'text' %}{{ c.text }}{% endif %}{% endfor %}{% endif %}{% endfor %}", messages=[{"role": "user", "content": [{"type": "text", "text": "A"}, {"type": "image"}, {"type": "text", "text": "B"}]}, {"role": "user", "content": "C"}])
p("tool_calls_loop", "{% for tc in m.tool_calls %}{% if tc.function is defined %}{% set tc = tc.function %}{% endif %}{{ tc.name }}({{ tc.arguments|tojson }}){% for k, v in tc.arguments|items %}{{ k }}={{ v }},{% endfor %}{% endfor %}", m={"role": "assistant", "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": {"city": "Paris", "n": 2, "u": "°C"}}}]})

# The real templates with tools, tool calls and tool results (keys of every
# dict already sorted, so a []Message with Go maps renders the same bytes).
SPECIALS = {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}
WEATHER = {"function": {"description": "Get the weather", "name": "get_weather",
                        "parameters": {"properties": {"city": {"type": "string"}}, "required": ["city"], "type": "object"}},
           "type": "function"}
TOOL_CONV = [
    {"role": "system", "content": "You are helpful."},
    {"role": "user", "content": "Weather in Paris?"},
    {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": {"city": "Paris", "days": 2}, "name": "get_weather"}, "type": "function"}]},
    {"role": "tool", "content": "{\"temp\": 21}", "tool_call_id": "call_1"},
    {"role": "assistant", "content": "It is 21 C."},
]
for fname in ["llama31_official.jinja", "llama32_official.jinja", "unsloth_llama31.jinja"]:
    src = open(fname).read()
    stem = fname.split(".")[0]
    p(stem + "_tools_in_user", src, messages=TOOL_CONV, tools=[WEATHER], add_generation_prompt=False, **SPECIALS)
    p(stem + "_tools_in_system", src, messages=TOOL_CONV, tools=[WEATHER], tools_in_user_message=False, add_generation_prompt=True, **SPECIALS)
    p(stem + "_tool_calls_no_tools", src, messages=TOOL_CONV, add_generation_prompt=False, **SPECIALS)
    p(stem + "_date_string", src, messages=TOOL_CONV[:2], date_string="01 Jan 2025", add_generation_prompt=True, **SPECIALS)
    p(stem + "_no_first_user", src, messages=[{"role": "system", "content": "S"}], tools=[WEATHER], add_generation_prompt=True, **SPECIALS)
    p(stem + "_unsorted_arguments", src, messages=[{"role": "user", "content": "u"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": {"z": 2.0, "a": [1, "é"], "m": None}, "name": "f"}, "type": "function"}]}], **SPECIALS)
    p(stem + "_two_tool_calls", src, messages=[{"role": "user", "content": "u"}, {"role": "assistant", "content": "", "tool_calls": [TOOL_CONV[2]["tool_calls"][0]] * 2}], **SPECIALS)
    if "32" not in fname:
        p(stem + "_builtin_tools", src, messages=[TOOL_CONV[1], {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": {"query": "paris weather"}, "name": "brave_search"}, "type": "function"}]}, {"role": "ipython", "content": "sunny"}],
          builtin_tools=["brave_search", "code_interpreter", "wolfram_alpha"], add_generation_prompt=True, **SPECIALS)

# Float formatting (repr) over many magnitudes, fixed seed.
rng = random.Random(1)
FLOATS = [rng.uniform(-1, 1) * 10 ** rng.randint(-320, 308) for _ in range(300)] + [rng.randint(-10**6, 10**6) / 8 for _ in range(50)]
p("tojson_random_floats", "{{ x|tojson }}", x=FLOATS)

env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols, Generation])
env.filters["tojson"] = tojson
env.globals["raise_exception"] = raise_exception
env.globals["strftime_now"] = lambda fmt: NOW.strftime(fmt)

out = []
for c in P:
    try:
        out.append(dict(c, output=env.from_string(c["template"]).render(**c["vars"])))
    except TemplateError as ex:
        out.append(dict(c, error=str(ex)))
with open("probes.json", "w") as f:
    json.dump(out, f, ensure_ascii=False, indent=1)
    f.write("\n")

# strftime over dates that exercise week numbers, padding and 12-hour clocks.
FORMATS = ["%d %b %Y", "%a %A %b %B %c", "%C %d %D %e %F %g %G %H %I %j %k %l %m %M %p %P %r %R %S %T",
           "%u %U %V %w %W %x %X %y %Y %%", "%-d %-m %-H %-I %_d %^a %^B %#b %10d %f", "%q %E %Oy %Ey"]
DATES = [datetime.datetime(2026, 1, 4, 9, 5, 9, 123), datetime.datetime(2024, 12, 31, 0, 0, 0),
         datetime.datetime(2021, 1, 1, 12, 30, 59, 999999), datetime.datetime(2027, 1, 1, 23, 59, 1),
         datetime.datetime(2020, 2, 29, 13, 1, 2), datetime.datetime(1999, 6, 15, 7, 8, 9)]
cases = [{"time": d.isoformat(), "format": f, "output": d.strftime(f)} for d in DATES for f in FORMATS]
with open("strftime.json", "w") as f:
    json.dump(cases, f, ensure_ascii=False, indent=1)
    f.write("\n")
