"""The faults scenario's arithmetic: bins, outages, and reading ping's and the agent's output."""

from __future__ import annotations

import json

import pytest

from scenarios.faults import outage, parse_asks, parse_ping, timeline


def test_attempts_are_binned_by_their_start_per_100_ms():
    attempts = [(0.01, 0.02, True), (0.05, 0.5, False), (0.15, 0.16, True), (0.29, 0.3, True), (9.0, 9.1, True)]
    assert timeline(attempts, 0.3) == [(1, 1), (1, 0), (1, 0), (0, 0)]


def test_the_outage_is_the_longest_run_of_failures_and_recovery_ends_at_the_last_one():
    attempts = [(0.0, 0.01, True), (1.0, 1.5, False), (1.5, 2.0, False), (2.1, 2.11, True),
                (3.0, 3.5, False), (3.6, 3.61, True), (9.0, 9.5, False)]
    longest, recovered, failed = outage(attempts, 0.5, 5.0)
    assert round(longest, 3) == 1.1  # 1.0 -> the success at 2.1
    assert round(recovered, 3) == 3.0 and failed == 3  # the last failure in the window ends at 3.5
    assert outage(attempts, 5.0, 8.0) == (0.0, 0.0, 0)
    # A run still failing when the window ends counts up to its last failure's end.
    assert outage([(1.0, 1.5, False), (1.5, 2.0, False)], 0.0, 5.0)[0] == 1.0


def test_an_attempt_belongs_to_the_window_it_ended_in():
    # Begun 0.1 s before the next fault (at 10 s), timed out 0.4 s into it: the next fault's.
    attempts = [(9.8, 9.81, True), (9.9, 10.4, False), (10.5, 10.51, True)]
    assert outage(attempts, 7.0, 10.0) == (0.0, 0.0, 0)
    longest, recovered, failed = outage(attempts, 10.0, 12.0)
    assert (round(longest, 3), round(recovered, 3), failed) == (0.5, 0.4, 1)  # from 10.0, not 9.9


def test_the_agents_samples_start_where_they_ended_minus_their_duration():
    out = json.dumps([{"ok": True, "t": 100.5, "ms": 500.0}, {"ok": False, "error": "timeout", "t": 101.0, "ms": 2}])
    assert parse_asks(out, 100.0) == [(0.0, 0.5, True), (pytest.approx(0.998), 1.0, False)]


def test_ping_replies_are_successes_and_unanswered_requests_failures_unless_answered_late():
    out = ("PING 10.244.1.2 (10.244.1.2) 56(84) bytes of data.\n"
           "[100.100000] 64 bytes from 10.244.1.2: icmp_seq=1 ttl=62 time=0.500 ms\n"
           "[100.200000] no answer yet for icmp_seq=2\n"
           "[100.250000] no answer yet for icmp_seq=3\n"
           "[100.300000] 64 bytes from 10.244.1.2: icmp_seq=3 ttl=62 time=150 ms\n")
    attempts = parse_ping(out, 100.0)
    assert sorted((round(s, 4), round(e, 4), ok) for s, e, ok in attempts) == [
        (0.0995, 0.1, True), (0.15, 0.2, False), (0.15, 0.3, True)]  # seq 3 came late: a success
