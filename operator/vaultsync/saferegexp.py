"""Regular expressions a tenant writes, matched in time linear in the input.

`dataFrom.find.name.regexp` and `dataFrom.rewrite[].regexp.source` come from namespaced
objects, so they are hostile input. Python's `re` backtracks: `(a+)+$` against forty
`a`s and a `b` runs for hours, holding the event loop. External Secrets Operator uses Go's
`regexp` (RE2), which cannot backtrack. So does this module, in the same way: the pattern
is parsed by Python's own parser (its syntax errors are the refusal), refused if it uses
what RE2 does not have (backreferences, lookaround, atomic groups, possessive repeats,
conditionals), compiled to a program of at most `PROGRAM_MAX` instructions, and run by a
Pike VM (Thompson's construction with submatches): every step advances every thread
by one character, so a match costs at most len(text) * len(program) steps, whatever the
pattern. A `Budget` caps the steps of a whole listing or rewrite on top of that.

Semantics are RE2's: leftmost-first submatches, `^`/`$` at the text's ends (lines
with `(?m)`), `.` not matching a newline (except with `(?s)`), `\\d`, `\\w`, `\\s` and `\\b` ASCII.
`replace_all` expands the target as Go's `Regexp.ReplaceAllString` does (`$1`, `${1}`,
`$name`, `${name}`, `$$`; `$1x` names a group `1x`, which does not exist: empty).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

from vaultsync.constants import REGEXP_MAX_LENGTH, REGEXP_PROGRAM_MAX

PROGRAM_MAX = REGEXP_PROGRAM_MAX
_FLAGS_ALLOWED = re.IGNORECASE | re.MULTILINE | re.DOTALL | re.UNICODE
_WORD = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_")
_CATEGORIES: dict[Any, Callable[[str], bool]] = {
    sre.CATEGORY_DIGIT: lambda ch: "0" <= ch <= "9",
    sre.CATEGORY_NOT_DIGIT: lambda ch: not "0" <= ch <= "9",
    sre.CATEGORY_SPACE: lambda ch: ch in "\t\n\f\r ",
    sre.CATEGORY_NOT_SPACE: lambda ch: ch not in "\t\n\f\r ",
    sre.CATEGORY_WORD: lambda ch: ch in _WORD,
    sre.CATEGORY_NOT_WORD: lambda ch: ch not in _WORD,
}
_UNSUPPORTED = {
    sre.GROUPREF: "backreferences",
    sre.GROUPREF_EXISTS: "conditional groups",
    sre.ASSERT: "lookahead and lookbehind",
    sre.ASSERT_NOT: "lookahead and lookbehind",
    sre.ATOMIC_GROUP: "atomic groups",
    sre.POSSESSIVE_REPEAT: "possessive repeats",
}

# Instructions: (op, a, b). CHAR: a = predicate; SPLIT: a preferred, b other; JMP: a;
# SAVE: a = slot; ASSERT: a = kind.
_CHAR, _SPLIT, _JMP, _SAVE, _ASSERT, _MATCH = range(6)
Instruction = tuple[int, Any, Any]


class BudgetExceeded(Exception):
    """The steps allowed to one listing or rewrite are spent."""


class Budget:
    """Steps a series of matches may take together; `BudgetExceeded` beyond them."""

    def __init__(self, steps: int) -> None:
        self.left = steps

    def spend(self, steps: int) -> None:
        self.left -= steps
        if self.left < 0:
            raise BudgetExceeded


@dataclass(frozen=True)
class SafeRegexp:
    """A compiled pattern; `compile` builds it, refusing with a ValueError that says why."""

    pattern: str
    program: tuple[Instruction, ...]
    groups: int
    names: dict[str, int]
    multiline: bool

    def search(self, text: str, budget: Budget, start: int = 0) -> list[int | None] | None:
        """The leftmost-first match at or after `start`: its slots (2 per group), or None."""
        program, slots = self.program, 2 * (self.groups + 1)
        matched: list[int | None] | None = None
        threads = self._follow(0, [None] * slots, start, text, set())
        position = start
        while True:
            budget.spend(len(threads) + 1)
            following: list[tuple[int, list[int | None]]] = []
            seen: set[int] = set()
            for pc, saved in threads:
                op, arg, _ = program[pc]
                if op == _MATCH:
                    matched = saved
                    break  # threads after this one have lower priority
                if position < len(text) and arg(text[position]):
                    following += self._follow(pc + 1, saved, position + 1, text, seen)
            if position >= len(text):
                return matched
            position += 1
            if matched is None:
                following += self._follow(0, [None] * slots, position, text, seen)
            if not following:
                return matched
            threads = following

    def matches(self, text: str, budget: Budget) -> bool:
        return self.search(text, budget) is not None

    def replace_all(self, text: str, template: str, budget: Budget) -> str:
        """Go's `ReplaceAllString`, step for step: every non-overlapping match replaced by
        `template`, expanded; an empty match right after the previous match is not."""
        out: list[str] = []
        last_end = search = 0
        while search <= len(text):
            found = self.search(text, budget, search)
            if found is None:
                break
            begin, end = found[0], found[1]
            assert begin is not None and end is not None
            out.append(text[last_end:begin])
            if end > last_end or begin == 0:
                out.append(self._expand(template, text, found))
            last_end = end
            search = search + 1 if search + 1 > end else end
        out.append(text[last_end:])
        return "".join(out)

    def _expand(self, template: str, text: str, slots: list[int | None]) -> str:
        out: list[str] = []
        i = 0
        while i < len(template):
            ch = template[i]
            if ch != "$" or i + 1 >= len(template):
                out.append(ch)
                i += 1
                continue
            if template[i + 1] == "$":
                out.append("$")
                i += 2
                continue
            name, after = _group_name(template, i + 1)
            if name is None:
                out.append("$")
                i += 1
                continue
            index = int(name) if name.isdigit() else self.names.get(name, -1)
            if 0 <= index <= self.groups:
                begin, end = slots[2 * index], slots[2 * index + 1]
                if begin is not None and end is not None:
                    out.append(text[begin:end])
            i = after
        return "".join(out)

    def _follow(
        self, pc: int, saved: list[int | None], position: int, text: str, seen: set[int]
    ) -> list[tuple[int, list[int | None]]]:
        """The threads reached from `pc` without reading a character, in priority order."""
        out: list[tuple[int, list[int | None]]] = []
        stack = [(pc, saved)]
        while stack:
            pc, saved = stack.pop()
            if pc in seen:
                continue
            seen.add(pc)
            op, a, b = self.program[pc]
            if op == _JMP:
                stack.append((a, saved))
            elif op == _SPLIT:
                stack.append((b, saved))
                stack.append((a, saved))
            elif op == _SAVE:
                copy = list(saved)
                copy[a] = position
                stack.append((pc + 1, copy))
            elif op == _ASSERT:
                if _holds(a, text, position, self.multiline):
                    stack.append((pc + 1, saved))
            else:
                out.append((pc, saved))
        return out


def _group_name(template: str, i: int) -> tuple[str | None, int]:
    """Go's rule: `${name}`, or the longest run of letters, digits and `_` after `$`."""
    if template[i] == "{":
        end = template.find("}", i + 1)
        name = template[i + 1 : end] if end > i + 1 else ""
        if end < 0 or not name or not all(c in _WORD for c in name):
            return None, i
        return name, end + 1
    end = i
    while end < len(template) and template[end] in _WORD:
        end += 1
    return (template[i:end], end) if end > i else (None, i)


def _holds(kind: Any, text: str, position: int, multiline: bool) -> bool:
    lines = multiline and kind in (sre.AT_BEGINNING, sre.AT_END)
    if kind in (sre.AT_BEGINNING, sre.AT_BEGINNING_STRING):
        return position == 0 or (lines and text[position - 1] == "\n")
    if kind in (sre.AT_END, sre.AT_END_STRING):
        return position == len(text) or (lines and text[position] == "\n")
    before = position > 0 and text[position - 1] in _WORD
    after = position < len(text) and text[position] in _WORD
    return (before != after) == bool(kind == sre.AT_BOUNDARY)


def compile_safe(pattern: str) -> SafeRegexp:
    """The pattern, compiled for the Pike VM; ValueError saying why it is refused."""
    if len(pattern) > REGEXP_MAX_LENGTH:
        raise ValueError(f"longer than {REGEXP_MAX_LENGTH} characters")
    try:
        parsed = sre_parse.parse(pattern, 0)
    except re.error as exc:
        raise ValueError(f"does not compile: {exc}") from None
    except RecursionError:
        raise ValueError("does not compile: nested too deeply") from None
    flags = parsed.state.flags
    if flags & ~_FLAGS_ALLOWED:
        raise ValueError("only the flags i, m and s are supported (as RE2)")
    builder = _Builder(bool(flags & re.IGNORECASE), bool(flags & re.DOTALL))
    builder.emit(_SAVE, 0)
    builder.sequence(parsed)
    builder.emit(_SAVE, 1)
    builder.emit(_MATCH)
    names = dict(parsed.state.groupdict)
    return SafeRegexp(
        pattern, tuple(builder.program), parsed.state.groups - 1, names, bool(flags & re.MULTILINE)
    )


class _Builder:
    def __init__(self, ignore_case: bool, dot_all: bool) -> None:
        self.program: list[Instruction] = []
        self.ignore_case = ignore_case
        self.dot_all = dot_all

    def emit(self, op: int, a: Any = None, b: Any = None) -> int:
        if len(self.program) >= PROGRAM_MAX:
            raise ValueError(f"too complex: over {PROGRAM_MAX} instructions once repeats are expanded")
        self.program.append((op, a, b))
        return len(self.program) - 1

    def patch(self, at: int, a: Any, b: Any = None) -> None:
        op = self.program[at][0]
        self.program[at] = (op, a, b)

    def sequence(self, items: Any) -> None:
        for op, av in items:
            self.node(op, av)

    def node(self, op: Any, av: Any) -> None:
        if op in _UNSUPPORTED:
            raise ValueError(f"uses {_UNSUPPORTED[op]}, which RE2 (External Secrets Operator's engine) lacks")
        if op in (sre.LITERAL, sre.NOT_LITERAL, sre.ANY, sre.IN):
            self.emit(_CHAR, self.predicate(op, av))
        elif op == sre.AT:
            self.emit(_ASSERT, av)
        elif op == sre.SUBPATTERN:
            group, add_flags, del_flags, body = av
            if (add_flags | del_flags) & ~_FLAGS_ALLOWED:
                raise ValueError("only the flags i, m and s are supported (as RE2)")
            saved = (self.ignore_case, self.dot_all)
            self.ignore_case = bool(add_flags & re.IGNORECASE) or (
                self.ignore_case and not del_flags & re.IGNORECASE
            )
            self.dot_all = bool(add_flags & re.DOTALL) or (self.dot_all and not del_flags & re.DOTALL)
            if group is not None:
                self.emit(_SAVE, 2 * group)
            self.sequence(body)
            if group is not None:
                self.emit(_SAVE, 2 * group + 1)
            self.ignore_case, self.dot_all = saved
        elif op == sre.BRANCH:
            self.branch(av[1])
        elif op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            self.repeat(*av)
        else:
            raise ValueError(f"uses a construct RE2 lacks ({op})")

    def branch(self, alternatives: list[Any]) -> None:
        jumps: list[int] = []
        for alternative in alternatives[:-1]:
            split = self.emit(_SPLIT)
            self.sequence(alternative)
            jumps.append(self.emit(_JMP))
            self.patch(split, split + 1, len(self.program))
        self.sequence(alternatives[-1])
        for jump in jumps:
            self.patch(jump, len(self.program))

    def repeat(self, low: int, high: int, body: Any) -> None:
        before = len(self.program)
        self.sequence(body)
        if len(self.program) == before:
            return  # an empty body repeated is empty, however many times (and costs no loop)
        del self.program[before:]
        for _ in range(low):
            self.sequence(body)
        if high == sre.MAXREPEAT:
            split = self.emit(_SPLIT)
            self.sequence(body)
            self.emit(_JMP, split)
            self.patch(split, split + 1, len(self.program))
            return
        ends: list[int] = []
        for _ in range(high - low):
            ends.append(self.emit(_SPLIT))
            self.sequence(body)
        for split in ends:
            self.patch(split, split + 1, len(self.program))

    def predicate(self, op: Any, av: Any) -> Callable[[str], bool]:
        if op == sre.ANY:
            dot_all = self.dot_all
            return lambda ch: dot_all or ch != "\n"
        if op in (sre.LITERAL, sre.NOT_LITERAL):
            wanted = self.variants(chr(av))
            if op == sre.LITERAL:
                return lambda ch: ch in wanted
            return lambda ch: ch not in wanted
        tests: list[Callable[[str], bool]] = []
        negate = False
        for item, value in av:
            if item == sre.NEGATE:
                negate = True
            elif item == sre.LITERAL:
                tests.append(_member(self.variants(chr(value))))
            elif item == sre.RANGE:
                tests.append(self.in_range(value[0], value[1]))
            elif item == sre.CATEGORY:
                tests.append(_CATEGORIES[value])
            else:
                raise ValueError(f"uses a character class RE2 lacks ({item})")

        def in_class(ch: str) -> bool:
            return any(test(ch) for test in tests) != negate

        return in_class

    def variants(self, ch: str) -> frozenset[str]:
        return frozenset({ch, ch.lower(), ch.upper()}) if self.ignore_case else frozenset(ch)

    def in_range(self, low: int, high: int) -> Callable[[str], bool]:
        if self.ignore_case:
            return lambda ch: any(low <= ord(v) <= high for v in (ch, ch.lower(), ch.upper()))
        return lambda ch: low <= ord(ch) <= high


def _member(chars: frozenset[str]) -> Callable[[str], bool]:
    return lambda ch: ch in chars
