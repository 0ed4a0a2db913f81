"""`GET /metrics` — Prometheus text format: refreshes by result, lateness histogram, tokens by status."""

from __future__ import annotations

import math
import time
from collections import Counter

from aiohttp import web

from mcpproxy.gateway.lease import LEASES
from mcpproxy.gateway.shared import BRIDGE, CONFIG, FANOUT, STARTED
from mcpproxy.status import OAUTH_STATUSES, static_status


async def handler(request: web.Request) -> web.Response:
    snap = await request.app[BRIDGE].snapshot()
    m = snap.metrics
    statuses = [snap.statuses.get(s.name) or static_status(s) for s in request.app[CONFIG].current.servers]
    by_status = Counter(s["oauth_status"] for s in statuses if s["is_oauth"])
    out = [
        "# HELP mcpproxy_refresh_total Refresh attempts by result (ok, or the error kind).",
        "# TYPE mcpproxy_refresh_total counter",
    ]
    for result, n in sorted(m["refreshes"].items()):
        out.append(f'mcpproxy_refresh_total{{result="{result}"}} {n}')
    out += [
        "# HELP mcpproxy_refresh_lateness_seconds Scheduled refresh start minus its due time.",
        "# TYPE mcpproxy_refresh_lateness_seconds histogram",
    ]
    cumulative = 0
    for bound, n in m["lateness_buckets"]:
        cumulative += n
        le = "+Inf" if math.isinf(bound) else repr(bound)
        out.append(f'mcpproxy_refresh_lateness_seconds_bucket{{le="{le}"}} {cumulative}')
    out.append(f"mcpproxy_refresh_lateness_seconds_sum {m['lateness_sum']:.6f}")
    out.append(f"mcpproxy_refresh_lateness_seconds_count {m['lateness_count']}")
    out += ["# HELP mcpproxy_tokens OAuth servers by oauth_status.", "# TYPE mcpproxy_tokens gauge"]
    for st in OAUTH_STATUSES:
        out.append(f'mcpproxy_tokens{{status="{st}"}} {by_status.get(st, 0)}')
    out += [
        "# HELP mcpproxy_servers Configured servers.", "# TYPE mcpproxy_servers gauge",
        f"mcpproxy_servers {len(statuses)}",
        "# HELP mcpproxy_sse_clients Connected SSE clients.", "# TYPE mcpproxy_sse_clients gauge",
        f"mcpproxy_sse_clients {len(request.app[FANOUT].clients)}",
        "# HELP mcpproxy_token_lease_hits_total Pass-through requests served from the gateway's token lease.",
        "# TYPE mcpproxy_token_lease_hits_total counter",
        f"mcpproxy_token_lease_hits_total {request.app[LEASES].hits}",
        "# HELP mcpproxy_token_asks_total Token asks the gateway sent to TokenActors (no lease held).",
        "# TYPE mcpproxy_token_asks_total counter",
        f"mcpproxy_token_asks_total {request.app[LEASES].asks}",
        "# HELP mcpproxy_uptime_seconds Seconds since the gateway started.", "# TYPE mcpproxy_uptime_seconds gauge",
        f"mcpproxy_uptime_seconds {time.time() - request.app[STARTED]:.1f}",
    ]
    return web.Response(text="\n".join(out) + "\n", content_type="text/plain", charset="utf-8")
