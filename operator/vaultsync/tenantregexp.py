"""Regular expressions a tenant writes, on Google's RE2: the engine of Go's `regexp`.

`dataFrom.find.name.regexp` and `dataFrom.rewrite[].regexp.source` come from namespaced
objects, so they are hostile input. Python's `re` backtracks: `(a+)+$` against forty `a`s
and a `b` runs for hours. External Secrets Operator matches them with Go's `regexp`, an RE2;
vaultsync uses RE2 itself (the `google-re2` package), so the syntax, the leftmost-first
submatches and the refusals (backreferences, lookaround, repeats over 1,000) are ESO's, and
no match ever backtracks. This module is what RE2's Python wrapper does not give:

- Refusals as a sentence for the field: RE2's own syntax error; `\\C` (one byte: RE2 has it,
  Go does not); a pattern over `REGEXP_MAX_LENGTH`; a program over `REGEXP_MAX_MEM` (RE2's
  `max_mem`, which also caps the memory its DFA may cache while matching).
- A bound on the work. RE2 is linear, but its constant is the program: when its DFA runs out
  of memory it falls back to the NFA, whose cost is the input's bytes times the program's
  instructions (`(.{1,999})z`, 9,000 instructions, against 20,000 bytes: 0.2 s). A `Budget`
  charges that bound, plus `REGEXP_SEARCH_UNITS` for the call itself (a few µs of the
  wrapper), before each search, so a listing's matching (or an ExternalSecret's rewrites
  together) stops at `REGEXP_WORK_BUDGET` units, deterministically and the same on every
  machine. An input-size bound alone would not do: the cost per byte grows with the program.
- Go's text model: RE2 reads UTF-8; a name holding a lone surrogate (a JSON `"\\ud800"`, or an
  invalid byte a transform kept) is matched as U+FFFD, as Go reads invalid UTF-8, and every
  character of the output is the input's own.
- Go's `ReplaceAllString` (the wrapper's `sub` is Python's): the target expands `$1`, `${1}`,
  `$name`, `${name}`, `$$`, and `$1x` names a group `1x`, which does not exist: empty; an
  empty match right after the previous match is not replaced.
- Memory: the wrapper caches 128 compiled patterns; it is purged after each compile, so only
  the patterns in use hold theirs.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

import re2

from vaultsync.constants import REGEXP_MAX_LENGTH, REGEXP_MAX_MEM, REGEXP_SEARCH_UNITS

_SURROGATE = re.compile("[\ud800-\udfff]")
_ONE_BYTE = re.compile(r"\\(?:Q.*?(?:\\E|$)|.)", re.DOTALL)  # escapes, and \Q...\E literal text
_TOO_LARGE = "pattern too large"


class BudgetExceeded(Exception):
    """The work allowed to one listing or to one ExternalSecret's rewrites is spent."""


class Budget:
    """Work a series of searches may do together, in bytes read times program instructions."""

    def __init__(self, units: int) -> None:
        self.left = units

    def spend(self, units: int) -> None:
        self.left -= units
        if self.left < 0:
            raise BudgetExceeded


@dataclass(frozen=True)
class TenantRegexp:
    """A compiled pattern; `compile_tenant` builds it, refusing with a ValueError that says why."""

    pattern: str
    program: re2._Regexp[str]

    def matches(self, text: str, budget: Budget) -> bool:
        seen = _as_go_reads(text)
        budget.spend(self._cost(len(seen.encode("utf-8"))))
        return self.program.search(seen) is not None

    def replace_all(self, text: str, template: str, budget: Budget) -> str:
        """Go's `ReplaceAllString`: every non-overlapping match replaced by `template`, expanded;
        an empty match right after the previous match is not. The wrapper's `finditer` finds the
        same matches as Go's loop (after an empty match it moves one character on)."""
        seen = _as_go_reads(text)
        left = len(seen.encode("utf-8"))  # bytes from where the next search starts
        budget.spend(self._cost(left))
        out: list[str] = []
        last_end = 0
        for found in self.program.finditer(seen):
            begin, end = found.span()
            out.append(text[last_end:begin])
            if end > last_end or begin == 0:
                out.append(self._expand(template, text, found))
            left -= len(seen[last_end:end].encode("utf-8"))
            last_end = end
            budget.spend(self._cost(left))
        out.append(text[last_end:])
        return "".join(out)

    def _cost(self, size: int) -> int:
        """What a search of `size` bytes may cost at most: RE2's NFA bound, and the call itself."""
        return size * self.program.programsize + REGEXP_SEARCH_UNITS

    def _expand(self, template: str, text: str, found: re2._Match[str]) -> str:
        out: list[str] = []
        i = 0
        while i < len(template):
            if template[i] != "$" or i + 1 >= len(template):
                out.append(template[i])
                i += 1
                continue
            if template[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            name, after = _group_name(template, i + 1)
            if name is None:  # malformed: Go copies the `$`
                out.append("$")
                i += 1
                continue
            index = int(name) if name.isascii() and name.isdigit() else self.program.groupindex.get(name, -1)
            if 0 <= index <= self.program.groups:
                begin, end = found.span(index)
                if begin >= 0:
                    out.append(text[begin:end])
            i = after
        return "".join(out)


def _is_name_char(ch: str) -> bool:
    """Go's rule for a group name in a target: a letter, a decimal digit or `_`."""
    return ch.isalpha() or ch == "_" or unicodedata.category(ch) == "Nd"


def _group_name(template: str, i: int) -> tuple[str | None, int]:
    """Go's rule: `${name}`, or the longest run of name characters after `$`."""
    if template[i] == "{":
        end = template.find("}", i + 1)
        name = template[i + 1 : end] if end > i + 1 else ""
        if end < 0 or not name or not all(_is_name_char(c) for c in name):
            return None, i
        return name, end + 1
    end = i
    while end < len(template) and _is_name_char(template[end]):
        end += 1
    return (template[i:end], end) if end > i else (None, i)


def _as_go_reads(text: str) -> str:
    """`text` with each lone surrogate as U+FFFD: same length, so spans index `text` too."""
    return _SURROGATE.sub("\ufffd", text)


def compile_tenant(pattern: str, *, captures: bool = True) -> TenantRegexp:
    """The pattern compiled by RE2 as Go would read it; ValueError saying why it is refused.

    Without `captures` RE2 only answers whether it matches (its DFA, no submatches): a find.
    """
    if len(pattern) > REGEXP_MAX_LENGTH:
        raise ValueError(f"longer than {REGEXP_MAX_LENGTH} characters")
    if _SURROGATE.search(pattern):
        raise ValueError("is not valid Unicode (a lone surrogate)")
    if any(escape.group() == "\\C" for escape in _ONE_BYTE.finditer(pattern)):
        raise ValueError("uses \\C (any byte), which Go's regexp (External Secrets Operator's engine) lacks")
    options = re2.Options()
    options.log_errors = False  # RE2 would print the refused pattern on the operator's stderr
    options.max_mem = REGEXP_MAX_MEM
    options.never_capture = not captures
    try:
        program = re2.compile(pattern, options)
    except re2.error as exc:
        reason = exc.args[0].decode() if isinstance(exc.args[0], bytes) else str(exc.args[0])
        if reason.startswith(_TOO_LARGE):
            raise ValueError(f"too complex: its RE2 program needs over {REGEXP_MAX_MEM} bytes") from None
        raise ValueError(f"does not compile as RE2 (Go's regexp) reads it: {reason}") from None
    finally:
        re2.purge()
    return TenantRegexp(pattern, program)
