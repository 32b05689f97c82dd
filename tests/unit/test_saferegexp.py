"""A tenant's regexp is matched in linear time, means what Go's RE2 means, and is refused with a reason."""

from __future__ import annotations

import re

import pytest

from vaultsync.saferegexp import Budget, BudgetExceeded, compile_safe

PLENTY = 10**8


@pytest.mark.parametrize(
    ("pattern", "text"),
    [
        ("abc", "xabcx"),
        ("^a.*z$", "abz"),
        ("a|ab", "ab"),
        ("(?i)ABC", "xabc"),
        (r"\bfoo\b", "a foo b"),
        ("x*", "abc"),
        ("(a)(b)?", "a"),
        ("a{2,3}", "aaaa"),
        ("[^a-c]+", "abcdef"),
        (r"\d+\w*", "ab12_c"),
        ("(?P<n>b)", "abc"),
        ("^db/(prod|staging)/.+$", "db/prod/password"),
        ("^db/(prod|staging)/.+$", "db/dev/password"),
        ("(?s)a.b", "a\nb"),
        ("a.b", "a\nb"),
    ],
)
def test_it_finds_what_python_finds_for_patterns_both_engines_read_alike(pattern: str, text: str) -> None:
    found = compile_safe(pattern).search(text, Budget(PLENTY))
    expected = re.search(pattern, text)
    if expected is None:
        assert found is None
    else:
        assert found is not None
        assert (found[0], found[1]) == expected.span()
        for group in range(1, (expected.re.groups or 0) + 1):
            begin, end = found[2 * group], found[2 * group + 1]
            span = (begin, end) if begin is not None else (-1, -1)
            assert span == expected.span(group)


def test_a_catastrophic_pattern_costs_steps_linear_in_the_input() -> None:
    pattern = compile_safe("(a+)+$")  # hours for a backtracking engine on this input
    text = "a" * 5000 + "b"
    budget = Budget(PLENTY)
    assert not pattern.matches(text, budget)
    assert PLENTY - budget.left < 20 * len(text) * len(pattern.program)


def test_a_spent_budget_stops_the_match() -> None:
    pattern = compile_safe("(x+x+)+y")
    with pytest.raises(BudgetExceeded):
        pattern.matches("x" * 10_000, Budget(1000))


@pytest.mark.parametrize(
    ("pattern", "reason"),
    [
        ("(a", "does not compile: missing ), unterminated subpattern at position 0"),
        ("[a-", "does not compile"),
        ("(?=a)b", "lookahead and lookbehind"),
        ("(?<!a)b", "lookahead and lookbehind"),
        (r"(a)\1", "backreferences"),
        ("(?>a+)", "atomic groups"),
        ("a++", "possessive repeats"),
        ("a{1000}b{1000}", "too complex"),
        ("(?x)a b", "only the flags i, m and s"),
        ("a" * 257, "longer than 256 characters"),
    ],
)
def test_a_pattern_re2_would_not_run_is_refused_saying_why(pattern: str, reason: str) -> None:
    with pytest.raises(ValueError, match=re.escape(reason)):
        compile_safe(pattern)


def test_an_empty_group_repeated_a_billion_times_costs_nothing_to_compile() -> None:
    assert compile_safe("(?:(?:){65535}){65535}x").matches("x", Budget(PLENTY))


@pytest.mark.parametrize(
    ("pattern", "text", "target", "expected"),
    [
        ("a*", "baaac", "X", "XbXcX"),
        ("", "abc", "-", "-a-b-c-"),
        ("b*", "abc", "-", "-a-c-"),
        ("^path/to/(.*)", "path/to/db-password", "$1", "db-password"),
        (r"(\w+)-(\w+)", "ab-cd", "${2}_$1", "cd_ab"),
        (r"(\w+)-(\w+)", "ab-cd", "$2_$1", "ab"),  # Go reads `$2_` as the group named "2_"
        ("(a)", "a", "$1x", ""),
        ("(a)", "a", "${1}x", "ax"),
        ("(?P<env>prod)", "db-prod", "${env}uction", "db-production"),
        ("/", "a/b/c", "_", "a_b_c"),
        ("x", "abc", "$$", "abc"),
        ("b", "abc", "$$", "a$c"),
    ],
)
def test_replace_all_expands_targets_as_go_does(pattern: str, text: str, target: str, expected: str) -> None:
    assert compile_safe(pattern).replace_all(text, target, Budget(PLENTY)) == expected
