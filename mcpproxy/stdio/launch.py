"""How a stdio server's process is started (docs/architecture.md "stdio servers"): its environment and the
tiny launcher that ties its life to the service's.

The environment is built from nothing: PATH, HOME and LANG of the service, then the config's `env` — never
the service's own (MCPPROXY_API_KEY, tokens, anything else a shell exported).

The launcher is `python -I -S -c LAUNCHER` exec'ing the command: on Linux it first asks the kernel to
SIGKILL it when the service dies (PR_SET_PDEATHSIG survives exec), so a `kill -9` of the service leaves
no server behind — the same guarantee the actors get from the Supervisor's orphan guard. It does this
before exec in the child itself, so the service (which has threads) never runs code between fork and
exec. It prints its PID on stderr first (the SDK's stdio transport does not expose it), then execs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping

#: The only variables a stdio server inherits from the service.
INHERITED = ("PATH", "HOME", "LANG")
PID_LINE = "mcpproxy-launch pid="

LAUNCHER = r"""
import os, sys
keep = set(sys.argv[2].split(",")) if sys.argv[2] else set()
try:
    import ctypes
    ctypes.CDLL(None).prctl(1, 9, 0, 0, 0)  # PR_SET_PDEATHSIG, SIGKILL
except (OSError, AttributeError):
    pass  # not Linux: no parent-death signal (docs/architecture.md "stdio servers")
if os.getppid() != int(sys.argv[1]):
    sys.exit(70)  # the service died before the line above: do not start an orphan
env = {k: v for k, v in os.environ.items() if k in keep}
sys.stderr.write("%s%d\n" % (sys.argv[3], os.getpid()))
sys.stderr.flush()
try:
    if sys.argv[4]:
        os.chdir(sys.argv[4])
except OSError as e:
    sys.stderr.write("cannot enter working_dir %s: %s\n" % (sys.argv[4], e.strerror or e))
    sys.exit(126)
try:
    os.execvpe(sys.argv[5], sys.argv[5:], env)
except OSError as e:
    sys.stderr.write("cannot start %s: %s\n" % (sys.argv[5], e.strerror or e))
    sys.exit(127)
"""


def child_env(server_env: Mapping[str, str], service_env: Mapping[str, str] | None = None) -> dict[str, str]:
    """PATH, HOME and LANG of the service, then the server's own `env` from the config."""
    service_env = os.environ if service_env is None else service_env
    env = {k: service_env[k] for k in INHERITED if k in service_env}
    env.update(server_env)
    return env


def launcher_argv(command: str, args: tuple[str, ...], env_names: list[str],
                  working_dir: str | None) -> tuple[str, list[str]]:
    """(program, arguments) that start `command args` under the launcher, keeping only `env_names`."""
    return sys.executable, ["-I", "-S", "-c", LAUNCHER, str(os.getpid()), ",".join(sorted(env_names)), PID_LINE,
                            working_dir or "", command, *args]
