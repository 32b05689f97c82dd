"""External Secrets Operator's Go templates, translated to vaultsync's Jinja2 where exact.

ESO renders `spec.target.template.data` with Go's text/template, Sprig's functions and
`missingkey=error`; vaultsync renders Jinja2 with strict undefined variables. Both print a
string value as it is and fail on a missing key, so a template made only of literal text,
`{{ .key }}` and `b64enc` produces the same bytes in both (a value that is not UTF-8 makes
vaultsync's `b64encode` fail loudly instead). Everything else (other functions, `if`,
`range`, variables, nested fields) is refused with the construct named: a template that
renders differently would write a different credential, silently.

Go's trim markers (`{{- ` and ` -}}`) are applied here, to the literal text beside them, as
Go's parser does; literal text that Jinja2 would read as its own syntax (`{%`, `{#`, a `{`
before `{{`) is written as a Jinja2 string so it still prints as-is.
"""

from __future__ import annotations

import keyword
import re
from dataclasses import dataclass

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_GO_SPACE = " \t\r\n"
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_FIELD = re.compile(r"\.([A-Za-z_][A-Za-z0-9_]*)")
_COMMENT = re.compile(r"/\*.*?\*/", re.DOTALL)
# Jinja2's own words, and its globals: a key spelled like a global that is missing from the
# data would print the global where Go fails.
_JINJA_WORDS = frozenset(
    {"true", "false", "none", "True", "False", "None", "and", "or", "not", "in", "is"}
    | {"range", "dict", "lipsum", "cycler", "joiner", "namespace"}
)
# Sprig functions whose vaultsync filter gives the same bytes.
_FILTERS = {"b64enc": "b64encode"}
# What Jinja2 could read as the start of its own syntax in literal text.
_JINJA_START = re.compile(r"\{(?=[{%#]|$)")


class Untranslatable(ValueError):
    """The template has a construct without an exact Jinja2 translation; the message names it."""


@dataclass(frozen=True)
class _Action:
    body: str
    trim_left: bool
    trim_right: bool


def translate(source: str) -> str:
    """The Jinja2 template (default `{{ }}` delimiters) that renders what `source` renders."""
    pieces: list[str | _Action] = []
    position = 0
    for match in _ACTION.finditer(source):
        pieces.append(source[position : match.start()])
        pieces.append(_action(match.group(1)))
        position = match.end()
    tail = source[position:]
    if "{{" in tail:
        raise Untranslatable("an action opened with '{{' is never closed")
    pieces.append(tail)
    _apply_trims(pieces)
    return "".join(_literal(p) if isinstance(p, str) else _expression(p.body) for p in pieces)


def _action(raw: str) -> _Action:
    # Go: "{{- " and " -}}" trim; the dash must be followed (preceded) by white space.
    trim_left = len(raw) >= 2 and raw[0] == "-" and raw[1] in _GO_SPACE
    trim_right = len(raw) >= 2 and raw[-1] == "-" and raw[-2] in _GO_SPACE
    body = raw[1 if trim_left else 0 : len(raw) - 1 if trim_right else len(raw)]
    return _Action(body.strip(_GO_SPACE), trim_left, trim_right)


def _apply_trims(pieces: list[str | _Action]) -> None:
    for i, piece in enumerate(pieces):
        if not isinstance(piece, _Action):
            continue
        before, after = pieces[i - 1], pieces[i + 1]
        if piece.trim_left and isinstance(before, str):
            pieces[i - 1] = before.rstrip(_GO_SPACE)
        if piece.trim_right and isinstance(after, str):
            pieces[i + 1] = after.lstrip(_GO_SPACE)


def _literal(text: str) -> str:
    return _JINJA_START.sub("{{ '{' }}", text)


def _expression(body: str) -> str:
    if _COMMENT.fullmatch(body):
        return ""
    if not body:
        raise Untranslatable("an empty action '{{ }}'")
    stages = [stage.strip(_GO_SPACE) for stage in body.split("|")]
    words = stages[0].split()
    if len(words) == 2 and words[0] in _FILTERS:  # `b64enc .key` is `.key | b64enc`
        stages = [words[1], words[0], *stages[1:]]
    variable = _variable(stages[0])
    filters = [_filter(stage) for stage in stages[1:]]
    return "{{ " + " | ".join([variable, *filters]) + " }}"


def _variable(term: str) -> str:
    field = _FIELD.fullmatch(term)
    if field is None:
        raise Untranslatable(f"'{term}' is not a plain key reference like '.password'")
    name = field.group(1)
    if keyword.iskeyword(name) or name in _JINJA_WORDS:
        raise Untranslatable(f"the key '{name}' is a reserved word in Jinja2")
    return name


def _filter(stage: str) -> str:
    if not _IDENTIFIER.fullmatch(stage):
        raise Untranslatable(f"'{stage}' is not a function vaultsync translates")
    if stage not in _FILTERS:
        raise Untranslatable(f"the function '{stage}' has no exact equivalent in vaultsync's templates")
    return _FILTERS[stage]
