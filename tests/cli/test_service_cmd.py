"""`mcpproxy service install|uninstall|status`: the systemd unit and the launchd plist, for either platform."""

from __future__ import annotations

import plistlib
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from mcpproxy.cli import service_cmd
from mcpproxy.cli.main import cli


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("MCPPROXY_CONFIG", raising=False)
    monkeypatch.delenv("MCPPROXY_DATA_DIR", raising=False)
    monkeypatch.delenv("MCPPROXY_LISTEN", raising=False)
    monkeypatch.delenv("MCPPROXY_API_KEY", raising=False)
    # Never drive the real service manager from a test.
    monkeypatch.setattr(service_cmd, "manager_available", lambda platform: False)
    return home


def _run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(cli, ["service", *args])
    return r.exit_code, r.stdout, r.stderr


def test_systemd_unit_is_written_verified_and_removed(home: Path) -> None:
    config = home / "cfg dir" / "mcp_config.json"
    code, out, err = _run("install", "--platform", "linux", "--config", str(config))
    assert code == 0, err
    unit = home / ".config" / "systemd" / "user" / "mcpproxy.service"
    assert f"Wrote {unit}" in out
    assert "systemctl --user enable --now mcpproxy.service" in out
    assert config.exists(), "install creates a default config when there is none"
    text = unit.read_text()
    for line in ("Type=notify", "Restart=on-failure", "KillMode=mixed", "WantedBy=default.target"):
        assert line in text.splitlines()
    exec_start = next(x for x in text.splitlines() if x.startswith("ExecStart="))
    exe = service_cmd.executable()
    assert Path(exe).is_absolute() and Path(exe).exists()
    assert exec_start == f'ExecStart={exe} serve --config "{config}"'

    if shutil.which("systemd-analyze"):
        r = subprocess.run(["systemd-analyze", "verify", "--man=no", str(unit)], capture_output=True, text=True,
                           timeout=60)
        problems = [x for x in (r.stdout + r.stderr).splitlines() if "mcpproxy.service" in x]
        assert r.returncode == 0 and not problems, r.stdout + r.stderr

    code, out, _ = _run("status", "--platform", "linux", "--config", str(config))
    assert code == 0 and "installed" in out and "not answering" in out

    code, out, _ = _run("uninstall", "--platform", "linux")
    assert code == 0 and "Removed" in out and "systemctl --user disable --now mcpproxy.service" in out
    assert not unit.exists()
    code, out, _ = _run("uninstall", "--platform", "linux")
    assert code == 0 and "Not installed" in out


def test_launchd_plist_round_trips(home: Path) -> None:
    data_dir = home / "data"
    config = home / "mcp_config.json"
    config.write_text(f'{{"data_dir": "{data_dir}"}}')
    code, out, err = _run("install", "--platform", "darwin", "--config", str(config))
    assert code == 0, err
    path = home / "Library" / "LaunchAgents" / "dev.mcpproxy.plist"
    assert "launchctl bootstrap gui/$(id -u)" in out
    doc = plistlib.loads(path.read_bytes())
    assert plistlib.loads(plistlib.dumps(doc)) == doc
    assert doc["Label"] == "dev.mcpproxy"
    assert doc["RunAtLoad"] is True and doc["KeepAlive"]
    assert doc["ProgramArguments"] == [service_cmd.executable(), "serve", "--config", str(config)]
    assert doc["StandardOutPath"].startswith(str(data_dir)) and doc["StandardErrorPath"].startswith(str(data_dir))
    code, out, _ = _run("uninstall", "--platform", "darwin")
    assert code == 0 and not path.exists() and "launchctl bootout" in out


def test_dry_run_prints_and_writes_nothing(home: Path) -> None:
    for platform, marker in (("linux", "Type=notify"), ("darwin", "<key>RunAtLoad</key>")):
        code, out, err = _run("install", "--dry-run", "--platform", platform)
        assert code == 0 and marker in out and "would write" in err
    assert not (home / ".config").exists() and not (home / "Library").exists()
    assert not (home / ".mcpproxy").exists()
    code, out, _ = _run("uninstall", "--dry-run", "--platform", "linux")
    assert code == 0 and "would remove" in out


def test_systemd_words_with_specials_are_quoted() -> None:
    unit = service_cmd.systemd_unit("/opt/my tools/mcpproxy", Path("/cfg/100%.json"))
    assert 'ExecStart="/opt/my tools/mcpproxy" serve --config /cfg/100%%.json' in unit


def test_windows_has_no_user_service_but_files_can_still_be_generated(
        home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 14.7: a host without systemd or launchd is told so, instead of getting a systemd unit."""
    monkeypatch.setattr(service_cmd.sys, "platform", "win32")
    for args in (["install"], ["uninstall"], ["status"]):
        code, _out, err = _run(*args)
        assert code == 1, args
        assert "no user service for this platform (win32): mcpproxy runs as a systemd user unit on Linux and a " \
               "launchd agent on macOS" in err, (args, err)
    assert not (home / ".config").exists()
    code, out, _ = _run("install", "--dry-run", "--platform", "darwin")
    assert code == 0 and "<key>RunAtLoad</key>" in out


def test_data_dir_and_listen_reach_the_unit_and_reload_is_sighup(home: Path, monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    """Issue 17.9: what install was told reaches the service's command line; `systemctl reload` sends SIGHUP."""
    config = home / "mcp_config.json"
    data_dir = home / "elsewhere"
    code, out, err = _run("install", "--platform", "linux", "--config", str(config), "--data-dir", str(data_dir),
                          "--listen", "127.0.0.1:9811")
    assert code == 0, err
    text = (home / ".config" / "systemd" / "user" / "mcpproxy.service").read_text().splitlines()
    exe = service_cmd.executable()
    assert f"ExecStart={exe} serve --config {config} --data-dir {data_dir} --listen 127.0.0.1:9811" in text
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    assert data_dir.is_dir()

    # The environment counts as the flags do (MCPPROXY_DATA_DIR, MCPPROXY_LISTEN); launchd gets the same words.
    monkeypatch.setenv("MCPPROXY_DATA_DIR", str(data_dir))
    monkeypatch.setenv("MCPPROXY_LISTEN", "[::1]:9812")
    code, out, err = _run("install", "--platform", "darwin", "--config", str(config))
    assert code == 0, err
    doc = plistlib.loads((home / "Library" / "LaunchAgents" / "dev.mcpproxy.plist").read_bytes())
    assert doc["ProgramArguments"] == [exe, "serve", "--config", str(config), "--data-dir", str(data_dir),
                                       "--listen", "[::1]:9812"]
    assert doc["StandardErrorPath"].startswith(str(data_dir))


def test_a_listen_the_service_would_refuse_is_refused_at_install(home: Path, monkeypatch: pytest.MonkeyPatch
                                                                 ) -> None:
    config = home / "mcp_config.json"
    config.write_text("{}")
    monkeypatch.setenv("MCPPROXY_API_KEY", "a-key-only-in-this-shell-0123")
    code, _out, err = _run("install", "--platform", "linux", "--config", str(config), "--listen", "0.0.0.0:9813")
    assert code == 1
    assert "--listen 0.0.0.0:9813 is not a loopback address" in err and "has no api_key" in err
    assert "MCPPROXY_API_KEY is not carried into the unit" in err
    assert not (home / ".config" / "systemd").exists()
    code, _out, err = _run("install", "--platform", "linux", "--config", str(config), "--listen", "nonsense")
    assert code == 1 and "listen: expected HOST:PORT" in err
