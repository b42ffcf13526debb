"""server.ids: request, decision and event ids come from a buffered CSPRNG: right format,
never repeated, not shared with a forked child or another thread; decision and event
ids start with the second they were made."""

from __future__ import annotations

import multiprocessing
import os
import re
import threading
import time
from typing import Any

import pytest

from server.audit.publisher import new_event_id
from server.decisions.service import new_decision_id
from server.ids import PerSecond, random_hex, random_urlsafe, time_ordered
from server.middleware import new_request_id


def test_ids_keep_their_formats_and_never_repeat() -> None:
    request_ids = {new_request_id() for _ in range(5000)}  # several refills of each pool
    decision_ids = [new_decision_id() for _ in range(5000)]
    event_ids = [new_event_id() for _ in range(5000)]
    assert len(request_ids) == 5000 and len(set(decision_ids)) == 5000 and len(set(event_ids)) == 5000
    assert all(re.fullmatch(r"[0-9a-f]{32}", rid) for rid in request_ids)
    assert all(re.fullmatch(r"dec_[0-9a-f]{12}[A-Za-z0-9_-]{22}", did) for did in decision_ids)
    assert all(re.fullmatch(r"evt_[0-9a-f]{36}", eid) for eid in event_ids)
    assert [len(random_urlsafe(n)) for n in (1, 2, 3, 16, 32)] == [2, 3, 4, 22, 43]  # as token_urlsafe
    assert len(random_hex(4096)) == 8192 and len(random_urlsafe(3072)) == 4096


def test_decision_and_event_ids_start_with_the_time_they_were_made() -> None:
    before = time.time()
    decision_id, event_id = new_decision_id(), new_event_id()
    after = time.time()
    for made in (int(decision_id[4:16], 16), int(event_id[4:16], 16)):
        assert int(before * 65536) <= made <= int(after * 65536)
        assert int(before) <= made >> 16 <= int(after)  # the first 8 digits: the second


def test_ids_made_one_after_another_sort_in_that_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within a second too: a batch's ids are appended at the end of their indexes."""
    clock = [1_800_000_000.0]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    made = []
    for step in range(200):
        clock[0] = 1_800_000_000.0 + step * 0.0001  # 200 ids within 20 ms of one second
        made.append((new_decision_id(), new_event_id()))
    decision_ids, event_ids = zip(*made, strict=True)
    assert list(decision_ids) == sorted(decision_ids) and list(event_ids) == sorted(event_ids)
    assert {d[4:12] for d in decision_ids} == {format(1_800_000_000, "08x")}
    assert time_ordered() == format(int(clock[0] * 65536), "012x")


def test_per_second_text_is_rendered_again_when_the_second_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    rendered: list[int] = []
    clock = [1000.2]
    monkeypatch.setattr(time, "time", lambda: clock[0])
    text = PerSecond(lambda second: rendered.append(second) or f"s{second}")
    assert [text(), text()] == ["s1000", "s1000"] and rendered == [1000]
    clock[0] = 1000.9
    assert text() == "s1000" and rendered == [1000]
    clock[0] = 1001.0
    assert text() == "s1001" and rendered == [1000, 1001]


def test_text_pools_hand_out_every_character_once() -> None:
    """Consecutive ids are consecutive slices of one random text: nothing is reused,
    and a refill starts a fresh text (no id straddles two)."""
    drawn = "".join(random_hex(16) for _ in range(1000))
    assert len({drawn[i:i + 32] for i in range(0, len(drawn), 32)}) == 1000
    assert set(drawn) <= set("0123456789abcdef") and len(set(drawn)) == 16
    urlsafe = "".join(random_urlsafe(16) for _ in range(1000))
    assert set(urlsafe) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(set(urlsafe)) == 64  # all of base64url's alphabet shows up: the bits are random


def test_threads_draw_different_ids() -> None:
    drawn: list[list[str]] = [[], []]

    def draw(into: list[str]) -> None:
        for _ in range(1000):
            into.extend((random_hex(16), random_urlsafe(16)))

    threads = [threading.Thread(target=draw, args=(into,)) for into in drawn]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert len(set(drawn[0]) | set(drawn[1])) == 4000


def _child_draws(queue: Any) -> None:
    queue.put((random_hex(16), random_urlsafe(16)))


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_reuse_the_parents_buffer() -> None:
    random_hex(16), random_urlsafe(16)  # the parent now holds pools it has barely used
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_child_draws, args=(queue,))
    child.start()
    from_child = queue.get(timeout=10)
    child.join(10)
    assert all(a != b for a, b in zip(from_child, (random_hex(16), random_urlsafe(16)), strict=True))
