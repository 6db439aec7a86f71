"""The web layer's building blocks on their own: form tokens, client addresses, the login
limiter and the group-commit batcher (with real threads and a real event loop)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

import pytest

from consentry.web.batcher import BatcherClosedError, GroupCommitBatcher
from consentry.web.ratelimit import SlidingWindowLimiter
from consentry.web.security import (
    ClientAddress,
    CsrfError,
    FormTokens,
    admin_csrf_token,
    check_admin_csrf,
    cookie_flags,
    security_headers,
    token_scope,
)

SECRET = "s" * 40


class Clock:
    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


# -- form tokens ------------------------------------------------------------------------------


def test_a_form_token_round_trips_and_measures_the_fill_time() -> None:
    clock = Clock()
    tokens = FormTokens(SECRET, clock=clock)
    issued = tokens.issue("sign:letter")
    clock.now += 7.5
    age = tokens.verify(issued.token, "sign:letter", issued.nonce)
    assert age == pytest.approx(7.5, abs=0.002)


@pytest.mark.parametrize(
    ("scope", "cookie", "problem"),
    [
        ("sign:other", None, "another form"),
        ("sign:letter", "wrong-nonce-wrong-nonce", "does not match"),
        ("sign:letter", "", "missing"),
    ],
)
def test_a_form_token_is_bound_to_its_form_and_cookie(
    scope: str, cookie: str | None, problem: str
) -> None:
    tokens = FormTokens(SECRET)
    issued = tokens.issue("sign:letter")
    with pytest.raises(CsrfError, match=problem):
        tokens.verify(issued.token, scope, issued.nonce if cookie is None else cookie)


def test_forged_tampered_and_foreign_key_tokens_are_refused() -> None:
    tokens = FormTokens(SECRET)
    issued = tokens.issue("sign:letter")
    other = FormTokens("k" * 40).issue("sign:letter", issued.nonce)
    tampered = issued.token[:-2] + ("AA" if not issued.token.endswith("AA") else "BB")
    for token in (other.token, tampered, "not-a-token", ""):
        with pytest.raises(CsrfError):
            tokens.verify(token, "sign:letter", issued.nonce)


def test_an_old_form_token_expires() -> None:
    clock = Clock()
    tokens = FormTokens(SECRET, clock=clock)
    issued = tokens.issue("sign:letter")
    clock.now += 23 * 3600
    assert tokens.verify(issued.token, "sign:letter", issued.nonce) == pytest.approx(23 * 3600)
    clock.now += 2 * 3600
    with pytest.raises(CsrfError, match="expired"):
        tokens.verify(issued.token, "sign:letter", issued.nonce)


def test_a_token_page_scope_does_not_contain_the_token() -> None:
    token = "A" * 43
    assert token not in token_scope(token)
    assert token_scope(token) != token_scope("B" * 43)


def test_the_admin_token_is_bound_to_the_session() -> None:
    one = admin_csrf_token(SECRET, "session-one")
    check_admin_csrf(SECRET, "session-one", one)
    for session, posted in (("session-two", one), ("session-one", None), ("session-one", "")):
        with pytest.raises(CsrfError):
            check_admin_csrf(SECRET, session, posted)
    assert admin_csrf_token("k" * 40, "session-one") != one


def test_cookie_and_header_policy() -> None:
    assert cookie_flags(dev=False) == {"httponly": True, "samesite": "lax", "secure": True}
    assert cookie_flags(dev=True)["secure"] is False
    normal = dict(security_headers(dev=False, frameable=False))
    assert normal[b"x-frame-options"] == b"DENY"
    assert b"frame-ancestors 'none'" in normal[b"content-security-policy"]
    assert b"unsafe-inline" not in normal[b"content-security-policy"]
    assert b"strict-transport-security" in normal
    widget = dict(security_headers(dev=True, frameable=True))
    assert b"x-frame-options" not in widget
    assert b"frame-ancestors *" in widget[b"content-security-policy"]
    assert b"strict-transport-security" not in widget


# -- client addresses ---------------------------------------------------------------------------


def test_forwarded_for_is_ignored_without_trusted_proxies() -> None:
    clients = ClientAddress(())
    assert clients.resolve("198.51.100.7", ["203.0.113.9"]) == "198.51.100.7"


def test_forwarded_for_is_read_right_to_left_through_trusted_proxies() -> None:
    clients = ClientAddress(["10.0.0.0/8", "127.0.0.1"])
    # The client forged the first hop; the proxy appended the real address.
    assert clients.resolve("10.1.2.3", ["6.6.6.6, 203.0.113.9"]) == "203.0.113.9"
    assert clients.resolve("10.1.2.3", ["203.0.113.9", "10.9.9.9"]) == "203.0.113.9"
    # A peer that is not a trusted proxy cannot speak for anyone else.
    assert clients.resolve("198.51.100.7", ["203.0.113.9"]) == "198.51.100.7"
    # Only trusted hops: the left-most one is the best we know; no header: the peer.
    assert clients.resolve("127.0.0.1", ["10.0.0.5"]) == "10.0.0.5"
    assert clients.resolve("127.0.0.1", []) == "127.0.0.1"
    # Garbage in the header is not believed.
    assert clients.resolve("127.0.0.1", ["<script>"]) == "127.0.0.1"
    assert ClientAddress(["2001:db8::/32"]).resolve("2001:db8::1", ["2001:db9::5"]) == (
        "2001:db9::5"
    )


# -- login limiter ------------------------------------------------------------------------------


def test_the_sliding_window_limits_per_key_and_forgets() -> None:
    clock = Clock(0.0)
    limiter = SlidingWindowLimiter(3, 60.0, clock=clock)
    assert [limiter.hit("a") for _ in range(4)] == [True, True, True, False]
    assert limiter.hit("b")
    clock.now = 61.0
    assert limiter.hit("a")


def test_the_limiter_memory_is_bounded() -> None:
    clock = Clock(0.0)
    limiter = SlidingWindowLimiter(1, 10.0, max_keys=100, clock=clock)
    for i in range(1000):
        assert limiter.hit(f"k{i}")
    assert len(limiter._events) <= 100


# -- group commit -------------------------------------------------------------------------------


class Recorder:
    def __init__(self, delay: float = 0.02) -> None:
        self.delay = delay
        self.batches: list[list[int]] = []
        self.lock = threading.Lock()

    def __call__(self, requests: Sequence[int]) -> list[str]:
        time.sleep(self.delay)  # a commit takes time; more requests queue up meanwhile
        with self.lock:
            self.batches.append(list(requests))
        return [f"done {r}" for r in requests]


def test_concurrent_submissions_share_commits_and_each_gets_its_own_result() -> None:
    recorder = Recorder()
    batcher: GroupCommitBatcher[int, str] = GroupCommitBatcher(
        recorder, max_batch=50, max_wait=0.005
    )
    batcher.start()

    async def main() -> list[str]:
        return list(await asyncio.gather(*(batcher.submit(i) for i in range(300))))

    try:
        results = asyncio.run(main())
    finally:
        batcher.close()
    assert results == [f"done {i}" for i in range(300)]
    assert sorted(r for batch in recorder.batches for r in batch) == list(range(300))
    assert max(len(b) for b in recorder.batches) <= 50
    assert len(recorder.batches) < 300 / 5  # grouped, not one commit per request
    assert batcher.largest_batch > 1


def test_a_failed_commit_fails_every_waiter_of_that_batch_only() -> None:
    calls = 0

    def commit(requests: Sequence[int]) -> list[int]:
        nonlocal calls
        calls += 1
        if 13 in requests:
            raise RuntimeError("disk full")
        return list(requests)

    batcher: GroupCommitBatcher[int, int] = GroupCommitBatcher(commit, max_batch=1)
    batcher.start()
    try:
        bad = batcher.submit_nowait(13)
        good = batcher.submit_nowait(14)
        with pytest.raises(RuntimeError, match="disk full"):
            bad.result(timeout=5)
        assert good.result(timeout=5) == 14
    finally:
        batcher.close()


def test_closing_finishes_queued_work_and_refuses_new_work() -> None:
    recorder = Recorder(delay=0.05)
    batcher: GroupCommitBatcher[int, str] = GroupCommitBatcher(recorder, max_batch=2)
    batcher.start()
    futures = [batcher.submit_nowait(i) for i in range(7)]
    batcher.close()
    assert [f.result(timeout=5) for f in futures] == [f"done {i}" for i in range(7)]
    with pytest.raises(BatcherClosedError):
        batcher.submit_nowait(99)
