"""`mcpproxy config validate`: problems name the file and the field; exit 0 valid, 1 problems."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from mcpproxy.cli.main import cli


def _write(tmp_path: Path, doc: object) -> Path:
    path = tmp_path / "mcp_config.json"
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return path


def _validate(path: Path) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["config", "validate", str(path)], env={"MCPPROXY_API_KEY": None,
                                                                         "MCPPROXY_LISTEN": None})
    return r.exit_code, r.stdout, r.stderr


def test_a_valid_file_exits_0_with_a_summary(tmp_path: Path) -> None:
    path = _write(tmp_path, {"listen": "127.0.0.1:8123", "data_dir": str(tmp_path), "mcpServers": [
        {"name": "gh", "url": "https://example.com/mcp", "oauth": {}},
        {"name": "local", "command": "echo"},
    ]})
    code, out, err = _validate(path)
    assert code == 0, err
    assert "valid" in out and "2 server(s), 1 with OAuth" in out and "127.0.0.1:8123" in out


def test_not_json_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, '{\n  "listen": "127.0.0.1:1",\n  oops\n}')
    code, _, err = _validate(path)
    assert code == 1
    assert str(path) in err and "line 3" in err


def test_every_broken_server_is_reported_with_its_field_path(tmp_path: Path) -> None:
    path = _write(tmp_path, {"mcpServers": [
        {"name": "ok", "url": "https://example.com/mcp"},
        {"name": "bad", "url": "http://example.com/mcp"},
        {"name": "worse", "url": "https://example.com/mcp", "oauth": {"scopes": 5}},
    ]})
    code, _, err = _validate(path)
    assert code == 1
    assert f"{path}: mcpServers[1] (bad).url: plain http://" in err
    assert "mcpServers[2] (worse).oauth.scopes: expected a list" in err
    assert "2 problem(s)" in err


def test_top_level_field_errors_and_unknown_keys(tmp_path: Path) -> None:
    code, _, err = _validate(_write(tmp_path, {"oauth_refresh_threshold": 3}))
    assert code == 1 and "oauth_refresh_threshold: expected a number from 0.5 to 0.95" in err
    code, _, err = _validate(_write(tmp_path, {"listen": "0.0.0.0:8080"}))
    assert code == 1 and "listen: 0.0.0.0:8080 is not a loopback address" in err
    code, out, err = _validate(_write(tmp_path, {"mcpservers": []}))
    assert code == 1 and "error:" in err and "mcpservers: unknown setting; did you mean 'mcpServers'?" in err


def test_a_missing_file_is_a_problem(tmp_path: Path) -> None:
    code, _, err = _validate(tmp_path / "nope.json")
    assert code == 1 and "no such file" in err


def test_the_removed_multi_host_settings_are_named_unknown(tmp_path: Path) -> None:
    # multiprocTCPBase listened on every interface with pickles; until multi-host is its own feature the
    # settings are gone, and a config that still has them hears so.
    path = _write(tmp_path, {"data_dir": str(tmp_path), "actor_system": "multiprocTCPBase",
                             "convention_address": "10.0.0.1:1900", "mcpServers": []})
    code, out, err = _validate(path)
    assert code == 0, (out, err)
    assert "actor_system: unknown setting, ignored" in err and "convention_address: unknown setting" in err


def test_provider_settings_name_the_field(tmp_path: Path) -> None:
    path = _write(tmp_path, {"listen": "127.0.0.1:8123", "data_dir": str(tmp_path), "mcpServers": [
        {"name": "slack", "url": "https://example.com/mcp", "oauth": {"redirect_uri": "https://slack.example.com/cb"}},
        {"name": "entra", "url": "https://example.com/mcp", "oauth": {"resource": "never", "assume_pkce_s256": True}},
    ]})
    code, _, err = _validate(path)
    assert code == 1
    assert "mcpServers[0] (slack).oauth.redirect_uri: expected an http:// URL on a loopback host" in err
    assert "mcpServers[1] (entra).oauth.resource: expected \"auto\", \"omit\"" in err


def test_a_misspelt_mcpservers_is_an_error_with_the_servers_under_it_checked_too(tmp_path: Path) -> None:
    # A typo of the server list used to pass as "valid — 0 server(s)", and a reload then dropped every server.
    path = _write(tmp_path, '{\n  "data_dir": "/tmp/x",\n  "mcpServer": [\n'
                            '    {"name": "gh", "url": "https://example.com/mcp", "oauht": {}}\n  ]\n}\n')
    code, out, err = _validate(path)
    assert code == 1 and out == ""
    assert f"error: {path}: mcpServer: unknown setting; did you mean 'mcpServers'? (line 3)" in err
    assert f"error: {path}: mcpServers[0] (gh).oauht: unknown setting; did you mean 'oauth'? (line 4)" in err
    assert "2 problem(s)" in err


def test_every_problem_in_one_run_top_level_and_servers(tmp_path: Path) -> None:
    path = _write(tmp_path, {"listen": 5, "oauth_refresh_threshold": 3, "Data_Dir": "/tmp/x", "headerz": 1,
                             "mcpServers": [
                                 {"name": "a", "url": "http://example.com/mcp"},
                                 {"name": "b", "url": "https://example.com/mcp",
                                  "oauth": {"client_idd": "x", "scopes": ["s"]}},
                                 {"name": "c", "url": "https://example.com/mcp", "headerz": {}},
                             ]})
    code, _, err = _validate(path)
    assert code == 1
    errors = [x for x in err.splitlines() if x.startswith("error:")]
    assert any("listen: expected a string" in x for x in errors)
    assert any("oauth_refresh_threshold: expected a number" in x for x in errors)
    assert any("Data_Dir: unknown setting; did you mean 'data_dir'?" in x for x in errors)
    assert any("mcpServers[0] (a).url: plain http://" in x for x in errors)
    assert any("mcpServers[1] (b).oauth.client_idd: unknown setting; did you mean 'client_id'?" in x for x in errors)
    assert len(errors) == 5, err
    # Far from any known key: reported with its path and the keys known there, and ignored.
    assert "warning: " in err and "headerz: unknown setting, ignored (known here: api_key, data_dir" in err
    assert "mcpServers[2] (c).headerz: unknown setting, ignored (known here: args, command, enabled" in err


def test_serve_refuses_a_misspelt_key_naming_every_problem(tmp_path: Path) -> None:
    path = _write(tmp_path, {"data_dir": str(tmp_path), "oauth_refresh_treshold": 0.7, "mcpServers": [
        {"name": "gh", "url": "https://example.com/mcp", "enabld": False}]})
    r = CliRunner().invoke(cli, ["serve", "--config", str(path)], env={"MCPPROXY_API_KEY": None,
                                                                       "MCPPROXY_LISTEN": None})
    assert r.exit_code == 2
    assert r.stderr.splitlines() == [
        f"mcpproxy: {path}: oauth_refresh_treshold: unknown setting; did you mean 'oauth_refresh_threshold'? (line 1)",
        f"mcpproxy: {path}: mcpServers[0] (gh).enabld: unknown setting; did you mean 'enabled'? (line 1)",
    ]
    assert not (tmp_path / "store").exists()
