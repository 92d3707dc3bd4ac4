"""``web.auth``'s failure limit with a fake clock: per client, forgetting old failures, and
bounded memory whatever the number of addresses; ``client_address`` for each proxy setting."""

from __future__ import annotations

import pytest

from web.auth import FAILURES_PER_MINUTE, MAX_CLIENTS, WINDOW, Auth, client_address


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _auth(clock: Clock) -> Auth:
    return Auth("pw", b"secret", 3600.0, clock)


def test_a_lock_out_is_per_client_and_ends_after_the_window():
    clock = Clock()
    auth = _auth(clock)
    for _ in range(FAILURES_PER_MINUTE):
        assert auth.blocked("a") == 0
        auth.record_failure("a")
    assert auth.blocked("a") > 0
    assert auth.blocked("b") == 0
    clock.now += WINDOW
    assert auth.blocked("a") == 0


def test_failures_of_many_addresses_stay_bounded():
    clock = Clock()
    auth = _auth(clock)
    # A flood from more addresses than the limit, all inside one window.
    for i in range(MAX_CLIENTS * 2):
        auth.blocked(f"10.0.{i // 256}.{i % 256}")
        auth.record_failure(f"10.0.{i // 256}.{i % 256}")
        clock.now += 0.001
    assert auth.statistics().tracked_clients <= MAX_CLIENTS
    # Checking addresses records nothing.
    for i in range(MAX_CLIENTS * 2):
        auth.blocked(f"192.168.{i // 256}.{i % 256}")
    assert auth.statistics().tracked_clients <= MAX_CLIENTS
    # Once the window has passed, old failures are forgotten on the next one.
    clock.now += WINDOW + 1
    auth.record_failure("fresh")
    assert auth.statistics().tracked_clients == 1


def test_a_locked_out_client_stays_locked_while_others_come_and_go():
    clock = Clock()
    auth = _auth(clock)
    for _ in range(FAILURES_PER_MINUTE):
        auth.record_failure("attacker")
    for i in range(100):
        auth.record_failure(f"other-{i}")
    assert auth.blocked("attacker") > 0


class Headers(dict):
    """The two lookups ``client_address`` uses, as werkzeug's ``Headers`` has them."""

    def __init__(self, *pairs: tuple[str, str]):
        super().__init__()
        self.pairs = [(k.lower(), v) for k, v in pairs]

    def get(self, name, default=None):
        return next((v for k, v in self.pairs if k == name.lower()), default)

    def getlist(self, name):
        return [v for k, v in self.pairs if k == name.lower()]


PEER = "10.9.8.7"


@pytest.mark.parametrize("trusted,headers,expected", [
    (None, [("X-Forwarded-For", "1.2.3.4"), ("Fly-Client-IP", "1.2.3.5")], PEER),
    ("fly", [("Fly-Client-IP", "1.2.3.4"), ("X-Forwarded-For", "5.6.7.8")], "1.2.3.4"),
    ("fly", [("Fly-Client-IP", " 2001:DB8::1 ")], "2001:db8::1"),
    ("fly", [("X-Forwarded-For", "5.6.7.8")], PEER),
    ("fly", [("Fly-Client-IP", "not an address")], PEER),
    (1, [("X-Forwarded-For", "1.1.1.1, 2.2.2.2")], "2.2.2.2"),
    (1, [("X-Forwarded-For", "1.1.1.1"), ("X-Forwarded-For", "2.2.2.2")], "2.2.2.2"),
    (2, [("X-Forwarded-For", "1.1.1.1, 2.2.2.2, 3.3.3.3")], "2.2.2.2"),
    (2, [("X-Forwarded-For", "3.3.3.3")], PEER),  # fewer entries than hops: not from the proxies
    (1, [("Fly-Client-IP", "1.2.3.4")], PEER),
    (1, [("X-Forwarded-For", "1.2.3.4:5678")], "1.2.3.4"),
    (1, [("X-Forwarded-For", "[2001:db8::2]:443")], "2001:db8::2"),
    (1, [("X-Forwarded-For", "unknown")], PEER),
    (1, [], PEER),
])
def test_client_address(trusted, headers, expected):
    assert client_address(PEER, Headers(*headers), trusted) == expected


def test_client_address_without_a_peer():
    assert client_address(None, Headers(), None) == "unknown"
