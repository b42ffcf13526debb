"""What the pages are made of, without HTTP: the trace of a long decision, highlighting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import engine
from server.ui.workbench import RULES_PER_PAGE, TRACE_ENDS, check, highlight, rules_page, trace_view


def rule(index: int, matched: bool = False) -> dict[str, Any]:
    return {"kind": "rule", "index": index, "line": index + 10, "condition": f"x == {index}", "matched": matched}


def test_a_short_trace_is_shown_whole() -> None:
    explanation: list[Any] = [{"kind": "evidence", "fact": "x"}, *(rule(i) for i in range(2 * TRACE_ENDS))]
    assert trace_view(explanation) == explanation


def test_a_long_trace_keeps_its_ends_and_counts_the_middle() -> None:
    rules = [rule(i, matched=i in (150, 499)) for i in range(500)]
    explanation: list[Any] = [{"kind": "evidence", "fact": "x"}, *rules]
    view = trace_view(explanation)
    assert view[: TRACE_ENDS + 1] == explanation[: TRACE_ENDS + 1]
    assert view[TRACE_ENDS + 1] == {"kind": "elided", "count": 500 - 2 * TRACE_ENDS, "matched": 1,
                                    "first": TRACE_ENDS + 1, "last": 500 - TRACE_ENDS}
    assert view[TRACE_ENDS + 2:] == rules[-TRACE_ENDS:]  # the deciding rule is in the tail


def test_highlighting_classes_tokens_and_escapes_the_rest() -> None:
    html = str(highlight('NOT is_pep AND context.country IN ["<b>"] OR amount >= 10.5'))
    assert '<span class="tok-kw">NOT</span>' in html and '<span class="tok-kw">IN</span>' in html
    assert '<span class="tok-name">context.country</span>' in html
    assert '<span class="tok-str">&#34;&lt;b&gt;&#34;</span>' in html
    assert '<span class="tok-op">&gt;=</span> <span class="tok-num">10.5</span>' in html
    assert "<b>" not in html
    assert str(highlight(None)) == '<span class="tok-kw">else</span>'


def test_rules_come_a_page_at_a_time_with_the_cases_reaching_them(tmp_path: Path) -> None:
    rules = "".join(f"      - if: context.n == {i}\n        then: pass\n        reason: r{i}\n" for i in range(250))
    (tmp_path / "many.yaml").write_text(
        f"purposes:\n  many:\n    description: many rules\n    context:\n      n: {{type: number}}\n    rules:\n{rules}")
    (tmp_path / "many_test.yaml").write_text(
        "purpose: many\ncases:\n  - {name: two hundred, input: {context: {n: 200}}, expect: {status: pass}}\n")
    checked = check(engine.load(tmp_path))
    purpose = checked.policy_set.purposes["many"]
    page = rules_page(purpose, checked, 3, only_unreached=False)
    assert (page.number, page.pages, page.total, page.unreached) == (3, 3, 250, 249)
    assert [row.rule.index for row in page.rows] == list(range(200, 250))
    assert [case.name for case in page.rows[0].cases] == ["two hundred"] and not page.rows[1].reached
    assert rules_page(purpose, checked, 99, only_unreached=False).number == 3  # past the end: the last page
    unreached = rules_page(purpose, checked, 3, only_unreached=True)
    assert 200 not in [row.rule.index for row in unreached.rows] and unreached.rows[-1].rule.index == 249
    assert RULES_PER_PAGE == 100
