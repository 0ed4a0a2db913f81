"""A login rehearsed before the fork, so each TokenActor copies fewer pages (docs/architecture.md "Processes").

CPython 3.11 rewrites a function's bytecode in place once it has run a few times (quickening) and
fills lazy caches on first use (urllib.parse's hex table, functools and `re` caches, ABC caches). In
a forked child, each of those writes copies the page it lands on. Running one made-up server's login
through the pure session core — with the pickle round trips its messages take — in the parent,
before `gc.freeze()`, does those writes once in pages every actor then shares.

The made-up login goes through a real token store in a temporary folder, opened and closed each round:
py-lmdb runs Python on every open (its "already open in this process" guard) and LMDB sets itself up
on a process's first open, so opening it here makes that first time shared too. That store is the
only file touched; nothing here touches the network or Thespian; the server, its AS and its tokens
are made up.
"""

from __future__ import annotations

import logging
import pickle
import tempfile
from multiprocessing.reduction import ForkingPickler
from pathlib import Path
from typing import Any

from actors.messages import (
    CompleteLogin,
    Configure,
    Event,
    GetStatus,
    GetToken,
    LogLine,
    StartLogin,
    Work,
    WorkDone,
)
from mcpproxy import session as core
from mcpproxy.config import OAuthSettings, ServerConfig
from mcpproxy.oauth import pkce
from mcpproxy.oauth.discovery import AuthServerMetadata, Discovery
from mcpproxy.oauth.registration import ClientRegistration
from mcpproxy.oauth.tokens import TokenResponse
from mcpproxy.sealing import KEY_BYTES, DataKey, Sealer
from mcpproxy.store import TokenStore
from mcpproxy.work import Discover, Exchange, Probe, Probed, Register

log = logging.getLogger("mcpproxy.warmup")

#: CPython 3.11 quickens a code object after 8 calls; a few more runs specialize what follows.
ROUNDS = 40
_AS = "http://127.0.0.1:9"  # port 9 (discard): never contacted
_SERVER = ServerConfig(name="warmup", protocol="http", url=f"{_AS}/mcp", oauth=OAuthSettings())
_REDIRECT = f"{_AS}/oauth/callback"
_META = AuthServerMetadata(
    issuer=_AS, authorization_endpoint=f"{_AS}/authorize", token_endpoint=f"{_AS}/token",
    registration_endpoint=f"{_AS}/register", revocation_endpoint=f"{_AS}/revoke",
    code_challenge_methods_supported=("S256",), scopes_supported=(), iss_parameter_supported=False,
)


def _wire(obj: Any) -> Any:
    """The round trip a message takes through Thespian's multiprocessing queues."""
    return pickle.loads(ForkingPickler.dumps(obj))


def _answer(op: Any) -> Any:
    if isinstance(op, Discover):
        return Discovery(resource=f"{_AS}/mcp", metadata=_META, scopes=())
    if isinstance(op, Register):
        return ClientRegistration("warmup-client", None, _META.issuer, _REDIRECT)
    if isinstance(op, Exchange):
        return TokenResponse("warmup-access", "Bearer", "warmup-refresh", 3600.0, None)
    if isinstance(op, Probe):
        return Probed(True, "warm-up")
    return None


_KEY = DataKey(bytes(KEY_BYTES), "key_file", "warm-up")


def login_once(data_dir: Path, now: float = 1_000_000.0) -> core.Session:
    """One login from an empty store to a persisted, probed token, then a token read and a status."""
    store = TokenStore(data_dir, sealer=Sealer(_KEY))
    try:
        session = _login(store, now)
        store.delete_token(_SERVER.name)  # the next round starts from an empty store again
        store.delete_client(_META.issuer)
        return session
    finally:
        store.close()


def _login(store: TokenStore, now: float) -> core.Session:
    session = core.new_session(_wire(_SERVER), 0.8, _REDIRECT)
    _wire(Configure(_SERVER, 0.8, _REDIRECT, "/nonexistent", None, None))
    events: list[core.Event] = [core.Loaded(store.get_token(_SERVER.name)),
                                core.LoginWanted("ui", pkce.new_state(), pkce.new_verifier())]
    while events:
        session, effects = core.step(session, events.pop(0), now)
        for effect in effects:
            match effect:
                case core.SendWork(request_id, generation, op):
                    _wire(Work(request_id, generation, op))
                    result = _answer(op)
                    if result is not None:
                        done = _wire(WorkDone(request_id, generation, result, now))
                        events.append(core.WorkFinished(request_id, generation, done.result, now, 0.5))
                case core.LoadClient(issuer):
                    events.append(core.ClientLoaded(issuer, store.get_client(issuer)))
                case core.SaveClient(issuer, client):
                    store.put_client(issuer, client)
                case core.Persist(record) if record is not None:
                    store.put_token(_SERVER.name, record)
                case core.Emit(name, payload):
                    _wire(Event(name, payload, now))
                case core.Log(_, message):
                    # As the actor sends it and the hub logs it, minus the writing: the first
                    # isinstance(str, Mapping) a LogRecord makes walks every Mapping subclass's ABC cache.
                    line = _wire(LogLine("mcpproxy.token", logging.INFO, message))
                    logging.LogRecord(line.logger, line.level, __file__, 0, "%s", (line.message,), None).getMessage()
                case core.Reply(_, answer):
                    _wire(answer)
                    if isinstance(answer, core.LoginStarted):
                        events.append(core.CodeReturned("browser", answer.state, "warmup-code"))
    for event in (core.TokenWanted("gateway"), core.StatusWanted("gateway")):
        session, effects = core.step(session, event, now)
        for effect in effects:
            if isinstance(effect, core.Reply):
                _wire(effect.answer)
    for msg in (StartLogin(_REDIRECT), CompleteLogin("state", "code"), GetToken(), GetStatus()):
        _wire(msg)
    return session


def rehearse() -> None:
    """Called once before the actor system forks; a failure only costs memory, so it is logged, not raised."""
    try:
        with tempfile.TemporaryDirectory(prefix="mcpproxy-warmup-") as tmp:
            for _ in range(ROUNDS):
                login_once(Path(tmp))
    except Exception as e:  # noqa: BLE001 — an optimization must never stop the service from starting
        log.warning("the pre-fork login rehearsal failed (%s: %s); each actor will use a little more memory",
                    type(e).__name__, e)
