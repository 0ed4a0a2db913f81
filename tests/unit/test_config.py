import json
from pathlib import Path

import pytest

from mcpproxy.config import (
    KNOWN_KEYS,
    ConfigError,
    config_from_document,
    load_config,
    unknown_keys,
    write_default_config,
)


def doc(**kw):
    return {"listen": "127.0.0.1:8080", "data_dir": "/tmp/x", "mcpServers": [], **kw}


def test_defaults_and_servers():
    c = config_from_document(doc(mcpServers=[
        {"name": "gh", "url": "https://api.example.com/mcp/", "oauth": {"client_id": "abc", "scopes": ["repo"]}},
        {"name": "disc", "url": "https://x.example.com/mcp"},
        {"name": "none", "url": "https://y.example.com/mcp", "oauth": None},
        {"name": "local", "command": "npx", "args": ["-y", "srv"]},
    ]), None, env={})
    assert c.refresh_threshold == 0.8
    assert [s.is_oauth for s in c.servers] == [True, True, False, False]
    assert c.servers[0].oauth.scopes == ("repo",)
    assert c.servers[3].protocol == "stdio"
    assert c.redirect_uri == "http://127.0.0.1:8080/oauth/callback"


def test_a_bad_server_is_reported_by_field_and_the_others_still_run():
    c = config_from_document(doc(mcpServers=[
        {"name": "ok", "url": "https://a.example.com/mcp"},
        {"name": "bad", "url": "ftp://nope"},
        {"name": "bad2", "url": "https://b.example.com", "oauth": {"scopes": "x", "client_secret": "s"}},
    ]), Path("/etc/c.json"), env={})
    assert [s.name for s in c.servers] == ["ok"]
    assert any("mcpServers[1] (bad).url" in p for p in c.problems)
    assert any("mcpServers[2] (bad2).oauth.client_secret" in p for p in c.problems)
    assert all(p.startswith("/etc/c.json: ") for p in c.problems)


@pytest.mark.parametrize("field,value,needle", [
    ("listen", "nonsense", "listen"),
    ("oauth_refresh_threshold", 0.2, "oauth_refresh_threshold"),
    ("oauth_refresh_threshold", "0.8", "oauth_refresh_threshold"),
    ("mcpServers", "x", "mcpServers"),
    ("api_key", "short", "api_key"),
])
def test_file_level_errors_name_the_field(field, value, needle):
    with pytest.raises(ConfigError, match=needle):
        config_from_document(doc(**{field: value}), Path("c.json"), env={})


def test_plain_http_only_for_loopback():
    c = config_from_document(doc(mcpServers=[{"name": "a", "url": "http://example.com/mcp"}]), None, env={})
    assert not c.servers and "loopback" in c.problems[0]


def test_environment_overrides_and_flags_win(tmp_path):
    p = tmp_path / "c.json"
    p.write_text(json.dumps(doc()))
    c = load_config(p, env={"MCPPROXY_LISTEN": "127.0.0.1:9999", "MCPPROXY_API_KEY": "k" * 20,
                            "MCPPROXY_DATA_DIR": str(tmp_path)})
    assert (c.listen_port, c.api_key, c.data_dir) == (9999, "k" * 20, tmp_path)
    assert load_config(p, listen="127.0.0.1:7000", env={"MCPPROXY_LISTEN": "127.0.0.1:9999"}).listen_port == 7000


def test_broken_json_names_file_and_position(tmp_path):
    p = tmp_path / "c.json"
    p.write_text('{"listen": ')
    with pytest.raises(ConfigError, match=r"c\.json: not valid JSON at line 1"):
        load_config(p, env={})


def test_default_config_is_created_private_and_never_overwritten(tmp_path):
    p = tmp_path / "d" / "mcp_config.json"
    write_default_config(p)
    assert p.stat().st_mode & 0o777 == 0o600
    assert load_config(p, env={}).servers == ()
    with pytest.raises(FileExistsError):
        write_default_config(p)


@pytest.mark.parametrize("key", ["actor_system", "convention_address"])
def test_the_removed_multi_host_settings_are_unknown_and_ignored(tmp_path, key):
    # multiprocTCPBase listened on 0.0.0.0 and traded pickles; the setting is gone until multi-host is built.
    path = tmp_path / "mcp_config.json"
    path.write_text(json.dumps({key: "multiprocTCPBase" if key == "actor_system" else "192.0.2.1:1900",
                                "mcpServers": []}))
    config = load_config(path, env={})
    assert key not in KNOWN_KEYS
    assert not hasattr(config, "actor_system") and not hasattr(config, "convention_address")
    assert len(config.warnings) == 1
    assert config.warnings[0].startswith(f"{path}: {key}: unknown setting, ignored (known here: api_key, ")
    assert config.problems == ()


def test_unknown_keys_do_not_make_a_reload_differ():
    base = {"mcpServers": [], "listen": "127.0.0.1:8080"}
    a = config_from_document(base, None, env={})
    b = config_from_document({**base, "actor_system": "multiprocTCPBase", "typo": 1}, None, env={})
    assert unknown_keys({**base, "actor_system": 1, "typo": 1}) == ["actor_system", "typo"]
    assert [w.split(" (")[0] for w in b.warnings] == ["config: actor_system: unknown setting, ignored",
                                                      "config: typo: unknown setting, ignored"]
    assert a == b


def test_the_actor_system_is_always_the_socket_free_queue_base():
    from actors.system import SYSTEM_BASE

    assert SYSTEM_BASE == "multiprocQueueBase"


@pytest.mark.parametrize("oauth,needle", [
    ({"resource": "sometimes"}, "oauth.resource: expected \"auto\", \"omit\""),
    ({"resource": "https://api.example.com/#frag"}, "oauth.resource"),
    ({"resource": "https://a.example.com", "extra_params": {"resource": "https://b.example.com"}},
     "oauth.resource: given twice"),
    ({"assume_pkce_s256": "yes"}, "oauth.assume_pkce_s256: expected true or false"),
    ({"redirect_uri": "https://localhost:3118/callback"}, "oauth.redirect_uri: expected an http:// URL on a loopback"),
    ({"redirect_uri": "http://example.com:3118/callback"}, "oauth.redirect_uri: expected an http:// URL on a loopback"),
    ({"redirect_uri": "http://localhost/callback"}, "oauth.redirect_uri: expected an explicit port"),
    ({"redirect_uri": "http://localhost:3118/cb?x=1"}, "oauth.redirect_uri: expected a path and no query"),
    ({"redirect_uri": "http://127.0.0.1:8080/cb"}, "oauth.redirect_uri: port 8080 is the service's own"),
    ({"redirect_uri": 3118}, "oauth.redirect_uri: expected a URL"),
])
def test_provider_settings_are_validated_by_field(oauth, needle):
    c = config_from_document(doc(mcpServers=[{"name": "p", "url": "https://a.example.com/mcp", "oauth": oauth}]),
                             None, env={})
    assert not c.servers
    assert any(f"mcpServers[0] (p).{needle}" in p for p in c.problems), c.problems


def test_provider_settings_read_back():
    c = config_from_document(doc(mcpServers=[{"name": "p", "url": "https://a.example.com/mcp", "oauth": {
        "client_id": "app", "resource": "omit", "redirect_uri": "http://localhost:3118/callback",
        "assume_pkce_s256": True}}]), None, env={})
    o = c.servers[0].oauth
    assert (o.resource, o.redirect_uri, o.assume_pkce_s256, o.resource_override) == (
        "omit", "http://localhost:3118/callback", True, None)
    given = config_from_document(doc(mcpServers=[{"name": "p", "url": "https://a.example.com/mcp",
                                                  "oauth": {"resource": "https://api.example.com"}}]), None, env={})
    assert given.servers[0].oauth.resource_override == "https://api.example.com"
    legacy = config_from_document(doc(mcpServers=[{"name": "p", "url": "https://a.example.com/mcp",
                                                   "oauth": {"extra_params": {"resource": "https://x.example.com"}}}]),
                                  None, env={})
    assert legacy.servers[0].oauth.resource == "auto"
    assert legacy.servers[0].oauth.resource_override == "https://x.example.com"


def test_a_server_entry_with_a_typo_is_left_out_and_named(tmp_path):
    # "oauht" would silently have meant "discover": the entry is a problem, the others still run.
    path = tmp_path / "mcp_config.json"
    path.write_text(json.dumps({"mcpServers": [
        {"name": "typo", "url": "https://example.com/mcp", "oauht": {"client_id": "x"}},
        {"name": "fine", "url": "https://example.com/mcp", "oauth": {"scopes": ["a"], "extra_param": {}}},
        {"name": "ok", "url": "https://example.com/mcp"},
    ]}))
    config = load_config(path, env={})
    assert [s.name for s in config.servers] == ["ok"]
    assert config.problems == (
        f"{path}: mcpServers[0] (typo).oauht: unknown setting; did you mean 'oauth'? (line 1)",
        f"{path}: mcpServers[1] (fine).oauth.extra_param: unknown setting; did you mean 'extra_params'? (line 1)",
    )


def test_the_known_keys_table_names_every_level():
    from mcpproxy.config import OAUTH_KEYS, SERVER_KEYS, typo_of

    assert typo_of("mcpservers", KNOWN_KEYS) == "mcpServers"
    assert typo_of("mcpServer", KNOWN_KEYS) == "mcpServers"
    assert typo_of("actor_system", KNOWN_KEYS) is None
    assert typo_of("oauht", SERVER_KEYS) == "oauth"
    assert typo_of("client_secrte", OAUTH_KEYS) == "client_secret"


def test_a_stdio_server_takes_env_and_working_dir(tmp_path):
    c = config_from_document(doc(mcpServers=[
        {"name": "local", "command": "npx", "args": ["-y", "srv"], "env": {"TOKEN": "s3cret", "B": "2"},
         "working_dir": str(tmp_path)},
    ]), None, env={})
    server = c.servers[0]
    assert server.env == (("B", "2"), ("TOKEN", "s3cret")) and server.working_dir == str(tmp_path)
    assert "s3cret" not in repr(server)  # a value in env may be a secret of the child's


@pytest.mark.parametrize("entry,needle", [
    ({"env": ["A=1"]}, "(local).env: expected an object"),
    ({"env": {"A": 1}}, "(local).env: expected an object"),
    ({"env": {"BAD NAME": "x"}}, "'BAD NAME' is not an environment variable name"),
    ({"working_dir": ""}, "(local).working_dir"),
])
def test_a_bad_stdio_entry_names_its_field(entry, needle):
    c = config_from_document(doc(mcpServers=[{"name": "local", "command": "srv", **entry}]), None, env={})
    assert not c.servers and needle in c.problems[0]


def test_the_tool_separator_is_configurable_and_checked():
    assert config_from_document(doc(), None, env={}).tool_separator == "__"
    assert config_from_document(doc(tool_separator="."), None, env={}).tool_separator == "."
    for bad in ("", "a b", "/", "12345", 3):
        with pytest.raises(ConfigError, match="tool_separator"):
            config_from_document(doc(tool_separator=bad), None, env={})
