"""A tenant's regexp runs on RE2 as Go's `regexp` reads it, costs a bounded amount of work, and is
refused with a reason the field's message can carry."""

from __future__ import annotations

import re

import pytest
import re2

from vaultsync.constants import REGEXP_SEARCH_UNITS
from vaultsync.tenantregexp import Budget, BudgetExceeded, compile_tenant

PLENTY = 10**12


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("abc", "xabcx"),
        ("^a.*z$", "abz"),
        ("(?i)ABC", "xabc"),
        (r"\bfoo\b", "a foo b"),
        ("a{2,3}", "aaaa"),
        ("[^a-c]+", "abcdef"),
        (r"\d+\w*", "ab12_c"),
        ("^db/(prod|staging)/.+$", "db/prod/password"),
        ("^db/(prod|staging)/.+$", "db/dev/password"),
        ("(?s)a.b", "a\nb"),
        ("a.b", "a\nb"),
    ],
)
def test_it_finds_what_python_finds_for_patterns_both_engines_read_alike(pattern: str, text: str) -> None:
    for captures in (True, False):
        found = compile_tenant(pattern, captures=captures).matches(text, Budget(PLENTY))
        assert found == (re.search(pattern, text) is not None)


@pytest.mark.parametrize(
    ("pattern", "text", "matches"),
    [
        (r"\d", "\u0663", False),  # Go's \d is ASCII; Python's is not
        (r"\w", "é", False),  # so is \w
        (r"\pL", "é", True),  # Unicode classes, which Python's re lacks
        ("[[:alpha:]]+$", "abc", True),  # POSIX classes, likewise
        ("(?i)é", "É", True),
        ("(?<env>prod)", "db/prod", True),  # Go 1.22's named group syntax
        (r"\Qa.b\E", "axb", False),  # literal text
        (r"\\C", "\\C", True),  # an escaped backslash, then C: not RE2's \C
        ("(?U)a+", "a", True),  # ungreedy, which Go has
    ],
)
def test_it_reads_patterns_as_go_does_where_python_differs(pattern: str, text: str, matches: bool) -> None:
    assert compile_tenant(pattern).matches(text, Budget(PLENTY)) is matches


def test_a_catastrophic_pattern_costs_work_linear_in_the_input() -> None:
    pattern = compile_tenant("(a+)+$")  # hours for a backtracking engine on this input
    text = "a" * 3000 + "b"
    budget = Budget(PLENTY)
    assert not pattern.matches(text, budget)
    assert PLENTY - budget.left == len(text) * pattern.program.programsize + REGEXP_SEARCH_UNITS


def test_the_work_is_counted_in_bytes_as_re2_reads_them() -> None:
    pattern = compile_tenant("z")
    ascii_budget, wide_budget = Budget(PLENTY), Budget(PLENTY)
    pattern.matches("a" * 100, ascii_budget)
    pattern.matches("中" * 100, wide_budget)  # three bytes each in UTF-8
    size = pattern.program.programsize
    assert PLENTY - wide_budget.left - REGEXP_SEARCH_UNITS == 300 * size
    assert PLENTY - ascii_budget.left - REGEXP_SEARCH_UNITS == 100 * size


def test_a_spent_budget_stops_the_match_before_it_runs() -> None:
    with pytest.raises(BudgetExceeded):
        compile_tenant("(.{1,999})z").matches("x" * 10_000, Budget(1_000_000))


def test_every_search_of_a_replacement_is_charged() -> None:
    pattern = compile_tenant("x")
    one, many = Budget(PLENTY), Budget(PLENTY)
    pattern.replace_all("x" + "a" * 99, "y", one)
    pattern.replace_all("x" * 100, "y", many)
    assert PLENTY - one.left < 3 * REGEXP_SEARCH_UNITS  # a search, and one from after the match
    assert PLENTY - many.left > 100 * REGEXP_SEARCH_UNITS  # 101 searches
    with pytest.raises(BudgetExceeded):
        pattern.replace_all("x" * 10_000, "y", Budget(10_000_000))


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a", "does not compile as RE2 (Go's regexp) reads it: missing ): (a"),
        ("[a-", "does not compile as RE2 (Go's regexp) reads it: missing ]: [a-"),
        ("(?=a)b", "invalid perl operator: (?="),
        ("(?<!a)b", "invalid perl operator: (?<!"),
        (r"(a)\1", r"invalid escape sequence: \1"),
        ("(?>a+)", "invalid perl operator: (?>"),
        ("a++", "bad repetition operator: ++"),
        (r"a\Z", r"invalid escape sequence: \Z"),  # Python's end of text; Go's is \z
        ("a{1001}", "invalid repetition size: {1001}"),
        ("(?x)a b", "invalid perl operator: (?x"),
        (r"(\pL{1,60})+\pN$", "too complex: its RE2 program needs over 1048576 bytes"),
        (r"a\Cb", r"uses \C (any byte), which Go's regexp (External Secrets Operator's engine) lacks"),
        ("a" * 257, "longer than 256 characters"),
        ("a\ud800", "is not valid Unicode (a lone surrogate)"),
    ],
)
def test_a_pattern_go_would_not_run_is_refused_saying_why(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        compile_tenant(pattern)


def test_compiling_leaves_nothing_in_the_wrappers_cache() -> None:
    compile_tenant("(a+)+$")
    assert re2._Regexp._make.cache_info().currsize == 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("pattern", "text", "target", "expected"),
    [
        ("a*", "baaac", "X", "XbXcX"),  # Python's re.sub: XbXXcX
        ("", "abc", "-", "-a-b-c-"),
        ("b*", "abc", "-", "-a-c-"),
        ("^path/to/(.*)", "path/to/db-password", "$1", "db-password"),
        (r"(\w+)-(\w+)", "ab-cd", "${2}_$1", "cd_ab"),
        (r"(\w+)-(\w+)", "ab-cd", "$2_$1", "ab"),  # Go reads `$2_` as the group named "2_"
        ("(a)", "a", "$1x", ""),
        ("(a)", "a", "${1}x", "ax"),
        ("(a)", "a", "$1é", ""),  # a Unicode letter continues the name too
        ("(a)", "a", r"\1", r"\1"),  # the wrapper's own sub would expand this
        ("(a)(b)?", "a", "[$2]", "[]"),
        ("(?P<env>prod)", "db-prod", "${env}uction", "db-production"),
        ("(?<env>prod)", "db-prod", "$env", "db-prod"),
        ("/", "a/b/c", "_", "a_b_c"),
        ("x", "abc", "$$", "abc"),
        ("b", "abc", "$$", "a$c"),
        ("b", "abc", "${", "a${c"),  # malformed: the $ is kept
        ("é", "aéb", "[$0]", "a[é]b"),
    ],
)
def test_replace_all_expands_targets_as_go_does(pattern: str, text: str, target: str, expected: str) -> None:
    assert compile_tenant(pattern).replace_all(text, target, Budget(PLENTY)) == expected


def test_a_lone_surrogate_is_read_as_go_reads_invalid_utf8_and_kept_in_the_output() -> None:
    pattern = compile_tenant("-(.)")
    assert pattern.matches("a-\ud800", Budget(PLENTY))
    assert pattern.replace_all("\udcff-\ud800!", "_$1", Budget(PLENTY)) == "\udcff_\ud800!"


def test_the_wrappers_own_sub_differs_from_go_where_the_wrapper_is_needed() -> None:
    assert re2.sub("a*", "X", "baaac") != compile_tenant("a*").replace_all("baaac", "X", Budget(PLENTY))
    assert re2.sub("(a)", "$1x", "a") == "$1x"


def test_a_refused_pattern_is_not_logged_by_re2(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError):
        compile_tenant("(?=tenant-pattern)")
    assert "tenant-pattern" not in capfd.readouterr().err
