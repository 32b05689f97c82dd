"""What tenants' regexps cost on RE2: the figures behind REGEXP_WORK_BUDGET and REGEXP_MAX_MEM.

`python -m bench.regexps` (`make bench-regexps`) times, through the operator's own wrapper
(operator/vaultsync/tenantregexp.py): the pattern that backtracks for hours in Python's `re`;
a 10,000-name listing against a typical find pattern, as the finder matches it; and the
worst patterns found for RE2 (its DFA gives up and the NFA pays the whole program per byte),
each as ns per unit of the work budget, so the budget's worst case in seconds can be read off.
No test asserts a time (docs/benchmarks.md, "Tenants' regexps").
"""

from __future__ import annotations

import time
from collections.abc import Callable

from vaultsync.constants import REGEXP_WORK_BUDGET
from vaultsync.tenantregexp import Budget, compile_tenant

UNLIMITED = 10**15
WORST = [
    r"(.{1,999}.{1,999})z",
    r"(.{1,999})z",
    r"((.{1,100})(.{1,100})){1,9}z",
    r"([^z]{1,999})z",
    r"^(.*)(.*)(.*)(.*)$",
    r"(x*)*(y*)*(a|aa)*$",
]
TEXTS = {"ascii": "a" * 20_000, "2-byte": "é" * 10_000, "3-byte": "中" * 7_000}


def _timed(run: Callable[[], object]) -> float:
    started = time.perf_counter()
    run()
    return time.perf_counter() - started


def main() -> None:
    catastrophic = compile_tenant("(a+)+$", captures=False)
    text = "a" * 3000 + "b"
    seconds = min(_timed(lambda: catastrophic.matches(text, Budget(UNLIMITED))) for _ in range(20))
    print(f"(a+)+$ against 3,000 'a's and a 'b': {seconds * 1e6:.0f} µs")

    names = [f"db/{'prod' if i % 3 else 'dev'}/service-{i:05d}/password" for i in range(10_000)]
    find = compile_tenant("^db/(prod|staging)/.+$", captures=False)
    budget = Budget(REGEXP_WORK_BUDGET)
    seconds = _timed(lambda: [name for name in names if find.matches(name, budget)])
    spent = REGEXP_WORK_BUDGET - budget.left
    print(f"10,000 names, ^db/(prod|staging)/.+$: {seconds * 1e3:.0f} ms, {spent:,} units")

    worst = 0.0
    for pattern in WORST:
        for captures in (False, True):
            compiled = compile_tenant(pattern, captures=captures)
            for kind, sample in TEXTS.items():
                budget = Budget(UNLIMITED)
                if captures:
                    seconds = _timed(lambda: compiled.replace_all(sample, "$1", budget))  # noqa: B023
                else:
                    seconds = _timed(lambda: compiled.matches(sample, budget))  # noqa: B023
                per_unit = seconds / (UNLIMITED - budget.left) * 1e9
                worst = max(worst, per_unit)
                print(
                    f"{pattern:32} captures={captures!s:5} {kind:6} "
                    f"program={compiled.program.programsize:6} {seconds * 1e3:7.1f} ms {per_unit:.2f} ns/unit"
                )
    print(f"worst {worst:.2f} ns/unit: the budget of {REGEXP_WORK_BUDGET:,} units is at most ", end="")
    print(f"{worst * REGEXP_WORK_BUDGET / 1e9:.2f} s here")


if __name__ == "__main__":
    main()
