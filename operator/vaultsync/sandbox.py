"""A tenant's template, rendered in a Jinja2 sandbox with the checks that are cheap to make.

This module runs inside the render worker (`render_worker.py`), a process of its own, so it
imports nothing but Jinja2, PyYAML (to read a `KeysAndValues` output, under the worker's
limits), the standard library and `constants`: the worker then takes about 21 MiB (PyYAML:
+1.1 MiB) and starts in a quarter of a second, where importing the operator would cost
95 MiB and two seconds.

The sandbox has no attribute access to Python internals and no file or network access;
undefined variables are errors, so a typo fails loudly instead of writing an empty
credential. Before work is done it refuses what is obviously too big: a template over
`TEMPLATE_MAX_SOURCE_BYTES`, more than `TEMPLATE_MAX_KEYS` keys, `*` that would repeat a
value past the output limit, `*`/`**` on integers past `TEMPLATE_MAX_INT_BITS`, and output
past the output limit as it is produced. These are a first line only: filters, formats and
macros can still ask for gigabytes or loop for hours, and the worker's process limits are
what stops them.

Every message names the template key and the problem, never a fetched value: an exception
raised while rendering can carry the value in its text, so only its type is reported.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import jinja2
import yaml
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from vaultsync.constants import (
    TEMPLATE_CPU_SECONDS,
    TEMPLATE_MAX_INT_BITS,
    TEMPLATE_MAX_KEYS,
    TEMPLATE_MAX_SOURCE_BYTES,
    TEMPLATE_MEMORY_MIB,
    TEMPLATE_OUTPUT_BYTES,
    TEMPLATE_WALL_CLOCK_FACTOR,
)

TEMPLATE_FIELD = "spec.target.template.data"
_UNDEFINED_NAME = re.compile(r"'[A-Za-z_][A-Za-z0-9_]*' is undefined")
_MIB = 1024 * 1024


def field(key: str | None, fields: Mapping[str, str] | None = None) -> str:
    """The spec field of one template key, or of the whole `data` map when none is known.

    `fields` names the templates that are not `template.data` keys (templateFrom's)."""
    if key and fields and key in fields:
        return fields[key]
    return f"{TEMPLATE_FIELD}.{key}" if key else TEMPLATE_FIELD


def _size(n: int) -> str:
    return f"{n // _MIB} MiB" if n % _MIB == 0 else f"{n} bytes"


@dataclass(frozen=True)
class Limits:
    """What one ExternalSecret's template may cost, all keys together."""

    cpu_seconds: float = TEMPLATE_CPU_SECONDS
    memory_mib: int = TEMPLATE_MEMORY_MIB
    output_bytes: int = TEMPLATE_OUTPUT_BYTES

    @property
    def wall_seconds(self) -> float:
        return self.cpu_seconds * TEMPLATE_WALL_CLOCK_FACTOR

    def cpu_exceeded(self) -> str:
        return f"exceeded the CPU time limit of {self.cpu_seconds:g} s"

    def wall_exceeded(self) -> str:
        return f"exceeded the time limit of {self.wall_seconds:g} s (wall clock)"

    def memory_exceeded(self) -> str:
        return f"exceeded the memory limit of {self.memory_mib} MiB"

    def output_exceeded(self) -> str:
        return f"exceeded the output size limit of {_size(self.output_bytes)}"


class RenderError(Exception):
    """A template failed; the message names the field and never a value."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class MemoryLimitError(RenderError):
    """The memory limit was hit: the worker answers, then exits so its heap starts clean."""


class _OverLimit(Exception):
    """Raised from inside a template by a first-line check; its message quotes no value."""


def check_shape(sources: Mapping[str, str], fields: Mapping[str, str] | None = None) -> None:
    """The key count and each template's size, before anything is compiled."""
    if len(sources) > TEMPLATE_MAX_KEYS:
        raise RenderError(f"{TEMPLATE_FIELD}: {len(sources)} keys, over the limit of {TEMPLATE_MAX_KEYS}")
    for key, source in sources.items():
        size = len(source.encode("utf-8", errors="surrogatepass"))
        if size > TEMPLATE_MAX_SOURCE_BYTES:
            raise RenderError(
                f"{field(key, fields)}: the template is {size} bytes, "
                f"over the limit of {TEMPLATE_MAX_SOURCE_BYTES}"
            )


def _is_int(value: Any) -> bool:
    return isinstance(value, int)


def _check_binop(operator: str, left: Any, right: Any, max_length: int) -> None:
    """Refuses `**` and `*` whose result is known to be huge before it is computed."""
    if operator == "**":
        huge = _is_int(left) and _is_int(right) and right > 0 and abs(left) > 1
        if huge and (abs(left).bit_length() - 1) * right > TEMPLATE_MAX_INT_BITS:
            raise _OverLimit(f"'**' would build a number over {TEMPLATE_MAX_INT_BITS} bits")
        return
    if _is_int(left) and _is_int(right):
        if left.bit_length() + right.bit_length() > TEMPLATE_MAX_INT_BITS:
            raise _OverLimit(f"'*' would build a number over {TEMPLATE_MAX_INT_BITS} bits")
        return
    count, repeated = (right, left) if _is_int(right) else (left, right)
    if _is_int(count) and isinstance(repeated, str | list | tuple) and len(repeated) * count > max_length:
        raise _OverLimit(f"'*' would repeat a value past the output size limit of {_size(max_length)}")


class _Sandbox(ImmutableSandboxedEnvironment):
    # Intercepted operators are also never folded at compile time (jinja2 nodes.BinExpr).
    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, delimiters: tuple[str, str], max_length: int) -> None:
        super().__init__(
            variable_start_string=delimiters[0],
            variable_end_string=delimiters[1],
            undefined=jinja2.StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
        )
        self.filters.update(b64encode=_b64encode, b64decode=_b64decode, fromjson=_fromjson)
        self._max_length = max_length

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        _check_binop(operator, left, right, self._max_length)
        return super().call_binop(context, operator, left, right)


def _b64encode(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


def _b64decode(value: str) -> str:
    return base64.b64decode(value).decode()


def _fromjson(value: str) -> Any:
    return json.loads(value)


def _describe_undefined(exc: jinja2.UndefinedError) -> str:
    """Names the missing variable; other undefined lookups may quote a value, so they don't."""
    message = exc.message or ""
    if _UNDEFINED_NAME.fullmatch(message):
        return f"{message} (fetched keys are the variables)"
    return "a lookup in the template found nothing (UndefinedError)"


def render_text(
    delimiters: tuple[str, str],
    sources: Mapping[str, str],
    context: Mapping[str, str],
    limits: Limits,
    on_key: Callable[[str], None] | None = None,
    fields: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """Each template rendered over `context`; `on_key` is told which key is about to start."""
    check_shape(sources, fields)
    env = _Sandbox(delimiters, limits.output_bytes)
    budget = limits.output_bytes
    rendered: dict[str, str] = {}
    for key, source in sources.items():
        if on_key is not None:
            on_key(key)
        text = _render_one(env, field(key, fields), source, context, budget, limits)
        budget -= len(text.encode("utf-8", errors="surrogateescape"))
        if budget < 0:
            raise RenderError(f"{field(key, fields)}: {limits.output_exceeded()}")
        rendered[key] = text
    return rendered


def _render_one(
    env: _Sandbox, where: str, source: str, context: Mapping[str, str], budget: int, limits: Limits
) -> str:
    # Compiling is inside the limits too: Jinja2 folds constant expressions while compiling.
    try:
        compiled = env.from_string(source)
        chunks: list[str] = []
        length = 0
        for chunk in compiled.generate(context):
            length += len(chunk)
            if length > budget:
                raise _OverLimit(limits.output_exceeded())
            chunks.append(chunk)
        return "".join(chunks)
    except jinja2.TemplateSyntaxError as exc:
        raise RenderError(f"{where}: syntax error on line {exc.lineno}: {exc.message}") from None
    except _OverLimit as exc:
        raise RenderError(f"{where}: {exc}") from None
    except MemoryError:
        raise MemoryLimitError(f"{where}: {limits.memory_exceeded()}") from None
    except jinja2.UndefinedError as exc:
        raise RenderError(f"{where}: {_describe_undefined(exc)}") from None
    except Exception as exc:  # a filter may embed its input (the secret) in the message
        raise RenderError(f"{where}: {type(exc).__name__} while rendering") from None


# Every scalar stays the text it was written as (`yes`, `0755`, `1_000`), as in ESO, which reads
# the map into Go strings: the base loader resolves no implicit types and builds no objects.
_YAML_LOADER: Any = getattr(yaml, "CBaseLoader", yaml.BaseLoader)


def parse_map(where: str, text: str) -> dict[str, str]:
    """`templateAs: KeysAndValues` and `literal`: the rendered text is a YAML map of Secret keys
    to values, as in External Secrets Operator. Parsed here, in the worker, under its limits.

    Scalars are kept as the text written; a nested map or list is refused. A YAML error
    names only the line: PyYAML's own message quotes the text, which may hold a value.
    """
    try:
        parsed = yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 (the base loader builds only text, lists and maps)
    except MemoryError:
        raise MemoryLimitError(f"{where}: exceeded the memory limit while reading the YAML") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        raise RenderError(f"{where}: the rendered text is not YAML{line}") from None
    if parsed is None:
        return {}
    if not isinstance(parsed, dict):
        raise RenderError(f"{where}: the rendered text is not a YAML map of Secret keys to values")
    out: dict[str, str] = {}
    for key, value in parsed.items():
        if not isinstance(key, str) or isinstance(value, dict | list):
            raise RenderError(
                f"{where}: the rendered map must have text keys and single values (no nested map or list)"
            )
        out[key] = "" if value is None else str(value)
    return out
