"""A TokenActor's log lines are written by the EventHub (actors/messages.py LogLine): they must still arrive."""

from __future__ import annotations

from tests.harness import ServiceHandle, wait_until


def test_a_token_actors_log_lines_reach_the_service_log_under_its_own_logger(service: ServiceHandle) -> None:
    service.login("demo")
    # The core's "login started" line, sent by the TokenActor and written by the hub's process, as it was.
    line = wait_until(lambda: next((ln for ln in service.logs().splitlines()
                                    if "mcpproxy.token server=demo login started" in ln), None),
                      15, "the TokenActor's 'login started' line in the service log")
    assert " INFO " in line
    assert (service.data_dir / "mcpproxy.log").read_text().count("mcpproxy.token server=demo login started") == 1
