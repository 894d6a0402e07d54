"""Start-up waits for what is only temporarily away (issue 14): pure backoff, and real agents."""

from __future__ import annotations

import random
import time

import pytest

from agent.retry import GaveUp, backoff_delays, retry_transient
from agent.tagging import ec2_transient


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_backoff_is_jittered_grows_and_is_capped():
    delays = backoff_delays(first=0.5, cap=8, rng=random.Random(1))
    first = [next(delays) for _ in range(12)]
    assert all(0.25 <= d <= 8 for d in first) and max(first[6:]) > 2
    other = backoff_delays(first=0.5, cap=8, rng=random.Random(2))
    assert first != [next(other) for _ in range(12)], "two agents do not retry in lockstep"


def test_a_transient_failure_is_waited_out_and_said():
    clock, calls, lines = FakeClock(), [], []

    def attempt() -> str:
        calls.append(clock.now)
        if len(calls) < 4:
            raise ConnectionError("refused")
        return "identity"

    class Log:
        def warning(self, fmt, *args):
            lines.append(fmt % args)

        def info(self, fmt, *args):
            lines.append(fmt % args)

    assert retry_transient(attempt, what="the metadata service", is_transient=lambda e: True,
                           give_up_after=60, sleep=clock.sleep, clock=lambda: clock.now,
                           logger=Log()) == "identity"
    assert len(calls) == 4 and len(clock.slept) == 3
    assert lines[0].startswith("waiting for the metadata service (try 1 failed: refused); next try in")
    assert lines[-1] == "the metadata service answered after 4 tries"


def test_it_gives_up_at_the_bound_and_at_once_on_a_permanent_error():
    clock = FakeClock()

    def down() -> None:
        raise ConnectionError("refused")

    with pytest.raises(GaveUp, match=r"still failing after .* tries in 30 s: refused"):
        retry_transient(down, what="x", is_transient=lambda e: True, give_up_after=30,
                        sleep=clock.sleep, clock=lambda: clock.now)
    assert 29.9 <= clock.now <= 30.1
    clock, calls = FakeClock(), []

    def wrong() -> None:
        calls.append(1)
        raise ValueError("bad config")

    with pytest.raises(ValueError):
        retry_transient(wrong, what="x", is_transient=lambda e: isinstance(e, ConnectionError),
                        give_up_after=30, sleep=clock.sleep, clock=lambda: clock.now)
    assert calls == [1] and clock.slept == []


def test_ec2_throttling_is_transient_and_bad_credentials_are_not():
    from botocore.exceptions import ClientError, EndpointConnectionError

    def error(code: str) -> ClientError:
        return ClientError({"Error": {"Code": code, "Message": code}}, "CreateTags")

    assert ec2_transient(error("RequestLimitExceeded")) and ec2_transient(error("InternalError"))
    assert ec2_transient(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    assert not ec2_transient(error("AuthFailure")) and not ec2_transient(error("UnauthorizedOperation"))


def test_the_metadata_error_says_whether_waiting_can_help():
    from neti_core.imds import MetadataError, fetch_identity
    from neti_core.lab.imds_server import ImdsServer, metadata_tree
    from neti_core.lab.zkserver import free_port

    with pytest.raises(MetadataError) as refused:
        fetch_identity(f"http://127.0.0.1:{free_port()}", timeout=0.5, attempts=1)
    assert refused.value.transient
    tree = metadata_tree("i-0123456789abcdef0", "10.0.0.5", "54.0.0.5", "0a:1b:2c:3d:4e:5f")
    with ImdsServer(tree) as server:
        server.throttle_until = time.monotonic() + 60
        with pytest.raises(MetadataError) as throttled:
            fetch_identity(server.url, timeout=0.5, attempts=1)
        assert throttled.value.transient and server.throttled >= 1
    tree["mac"] = "not-a-mac"
    with ImdsServer(tree) as server, pytest.raises(MetadataError) as malformed:
        fetch_identity(server.url)
    assert not malformed.value.transient
