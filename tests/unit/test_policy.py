import random

from mcpproxy import policy


def test_refresh_due_at_is_threshold_of_lifetime():
    assert policy.refresh_due_at(1000.0, 1100.0, 0.8) == 1080.0
    assert policy.refresh_due_at(1000.0, 1002.0, 0.5) == 1001.0


def test_no_proactive_refresh_without_lifetime_or_when_turned_off():
    assert policy.refresh_due_at(1000.0, None, 0.8) is None
    assert policy.refresh_due_at(1000.0, 1100.0, 1.0) is None


def test_backoff_is_jittered_exponential_and_capped():
    rng = random.Random(7)
    for attempt, ceiling in [(0, 1), (1, 2), (3, 8), (5, 32), (6, 60), (30, 60)]:
        assert policy.backoff_ceiling(attempt) == ceiling
        for _ in range(50):
            d = policy.backoff_delay(attempt, None, rng.random())
            assert policy.JITTER_FLOOR * ceiling <= d <= ceiling
    assert policy.backoff_delay(3, None, 0.0) == policy.JITTER_FLOOR * 8
    assert policy.backoff_delay(3, None, 1.0) == 8


def test_backoff_honours_retry_after_but_not_absurd_ones():
    assert policy.backoff_delay(0, 30.0, 0.5) == 30.0
    assert policy.backoff_delay(0, 10_000.0, 0.5) == policy.RETRY_AFTER_CAP


def test_permanent_failures_give_up_at_once_transient_ones_never():
    for kind in ("invalid_grant", "invalid_client", "config"):
        assert policy.gives_up(kind, 1)
    for kind in ("network", "server"):
        assert not policy.gives_up(kind, 10_000)
    assert not policy.gives_up("protocol", policy.MAX_PROTOCOL_ATTEMPTS - 1)
    assert policy.gives_up("protocol", policy.MAX_PROTOCOL_ATTEMPTS)
