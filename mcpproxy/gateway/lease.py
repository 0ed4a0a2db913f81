"""The gateway's token lease (docs/architecture.md "Token lease"): each server's current access token, kept
between pass-through requests so that a call costs no ask of its TokenActor.

A lease ends at the first of:
- the end its TokenAnswer carries (`refresh_at`: the token's refresh point, or just before its expiry) — so
  it ends by time even if no announcement reaches the gateway;
- any event the TokenActor announces about that server (a refresh, a logout, a login, any status change);
- a logout, login or config change that passes through the gateway: `cut()` before asking the actor and
  again once it answered, so no lease outlives a logout the gateway answered;
- an upstream 401.

Races: every drop bumps the server's `epoch`, and an answer is kept only when no drop happened while it was
asked for (a late answer never revives a dropped token). A `cut` also bumps the `fence`: a request whose ask
was out across a cut never uses that answer; it asks again (at most ASK_ATTEMPTS times).

All state lives on the event loop; the hub's events reach it through the bridge's listener via
`call_soon_threadsafe`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from aiohttp import web

from actors.messages import Failure, GetToken, Published, TokenAnswer, TokenRefused, TokenRejected
from mcpproxy import policy
from mcpproxy.gateway.shared import BRIDGE

log = logging.getLogger("mcpproxy.lease")

#: A token whose answer names no end (no expiry known) is asked for again at least this often.
LEASE_MAX = 300.0
#: GetToken waits for a refresh in flight, which the actor gives up on after WORK_DEADLINE.
TOKEN_TIMEOUT = policy.WORK_DEADLINE + 5.0
ASK_TIMEOUT = 10.0
#: Asks in a row a request makes while logouts or logins keep cutting its answers away.
ASK_ATTEMPTS = 3

T = TypeVar("T")


@dataclass(frozen=True)
class Lease:
    answer: TokenAnswer
    until: float  # wall clock, like the token's own refresh point


class Leases:
    """Every server's lease, its epoch (bumped by every drop) and fence (bumped by every cut)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._leases: dict[str, Lease] = {}
        self._epochs: dict[str, int] = {}
        self._fences: dict[str, int] = {}
        self._asks: dict[tuple[str, int], asyncio.Future[Any]] = {}
        self.hits = 0
        self.asks = 0

    def get(self, name: str) -> TokenAnswer | None:
        lease = self._leases.get(name)
        if lease is None:
            return None
        if self.clock() >= lease.until:
            del self._leases[name]
            return None
        return lease.answer

    def epoch(self, name: str) -> int:
        return self._epochs.get(name, 0)

    def fence(self, name: str) -> int:
        return self._fences.get(name, 0)

    def drop(self, name: str) -> None:
        """Forgets the lease; an answer asked for before now is not kept."""
        self._epochs[name] = self.epoch(name) + 1
        self._leases.pop(name, None)

    def cut(self, name: str) -> None:
        """drop(), and an answer asked for before now is not used either (a logout or login is under way)."""
        self.drop(name)
        self._fences[name] = self.fence(name) + 1

    def cut_all(self) -> None:
        for name in {*self._leases, *self._epochs, *(n for n, _ in self._asks)}:
            self.cut(name)

    def offer(self, name: str, answer: TokenAnswer, epoch: int) -> bool:
        """Keeps the answer as the lease unless a drop happened since `epoch` or its end has come."""
        if epoch != self.epoch(name):
            return False
        now = self.clock()
        until = min(answer.refresh_at if answer.refresh_at is not None else now + LEASE_MAX, now + LEASE_MAX)
        if until <= now:
            return False
        self._leases[name] = Lease(answer, until)
        return True

    def on_event(self, ev: Published) -> None:
        """Any event naming a server ends its lease: the TokenActor announces every change it makes."""
        name = ev.payload.get("server_name", ev.payload.get("name"))
        if isinstance(name, str):
            self.drop(name)

    def __len__(self) -> int:
        return len(self._leases)


LEASES = web.AppKey("leases", Leases)


async def current_token(app: web.Application, name: str) -> TokenAnswer | Failure:
    """The server's current access token: the lease while it holds, else its TokenActor's answer (one ask for
    every request that arrives meanwhile). Raises ActorUnavailable like any ask."""
    leases = app[LEASES]
    answer: Any = None
    for _ in range(ASK_ATTEMPTS):
        held = leases.get(name)
        if held is not None:
            leases.hits += 1
            return held
        fence = leases.fence(name)
        answer = await _shared_ask(app, name, fence)
        if not isinstance(answer, TokenAnswer):
            return _failure(name, answer)
        if leases.fence(name) == fence:
            return answer
        # A logout or login passed through meanwhile: this answer may predate it.
    return Failure(name, "cancelled", f"server '{name}': its session kept changing while asking for its token "
                                      "(logout or login in progress) — try again")


async def rejected_token(app: web.Application, name: str, token: TokenAnswer) -> TokenAnswer | Failure:
    """The upstream answered 401 to `token`: the lease goes, and the actor refreshes (single flight)."""
    leases = app[LEASES]
    leases.drop(name)
    epoch, fence = leases.epoch(name), leases.fence(name)
    answer = await app[BRIDGE].ask_server(name, TokenRejected(token.generation), TOKEN_TIMEOUT)
    if not isinstance(answer, TokenAnswer):
        return _failure(name, answer)
    if leases.fence(name) != fence:
        return await current_token(app, name)
    leases.offer(name, answer, epoch)
    return answer


async def refused_token(app: web.Application, name: str, token: TokenAnswer) -> None:
    """The upstream answered 401 even to a fresh token: the lease goes, and a person must log in."""
    app[LEASES].drop(name)
    await app[BRIDGE].ask_server(name, TokenRefused(token.generation), ASK_TIMEOUT)


async def cutting(app: web.Application, name: str, ask: Awaitable[T]) -> T:
    """Runs a logout's or login's ask with the lease cut before it and again after its answer, before the
    gateway answers: a token asked for meanwhile is neither kept nor used."""
    leases = app[LEASES]
    leases.cut(name)
    try:
        return await ask
    finally:
        leases.cut(name)


async def _shared_ask(app: web.Application, name: str, fence: int) -> Any:
    leases = app[LEASES]
    key = (name, fence)
    fut = leases._asks.get(key)
    if fut is None:
        fut = asyncio.ensure_future(_ask(app, name, leases.epoch(name)))
        leases._asks[key] = fut
        fut.add_done_callback(lambda f: _forget(leases, key, f))
    return await asyncio.shield(fut)


async def _ask(app: web.Application, name: str, epoch: int) -> Any:
    leases = app[LEASES]
    leases.asks += 1
    answer = await app[BRIDGE].ask_server(name, GetToken(), TOKEN_TIMEOUT)
    if isinstance(answer, TokenAnswer):
        leases.offer(name, answer, epoch)
    return answer


def _forget(leases: Leases, key: tuple[str, int], fut: asyncio.Future[Any]) -> None:
    if leases._asks.get(key) is fut:
        del leases._asks[key]
    if not fut.cancelled():
        fut.exception()  # retrieved: every waiter may have gone away


def _failure(name: str, answer: Any) -> Failure:
    if isinstance(answer, Failure):
        return answer
    return Failure(name, "internal", f"server '{name}': unexpected answer from its token actor")
