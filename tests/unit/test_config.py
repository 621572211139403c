from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import ConfigError, load_config


def test_defaults_need_no_file() -> None:
    config = load_config(None, environ={})
    assert config.server.host == "127.0.0.1" and config.server.http_port == 8765
    assert config.redis_url is None and not config.auth.enabled


def test_file_then_environment_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "g.toml"
    path.write_text('[server]\nhttp_port = 9000\nhost = "127.0.0.2"\n[rate_limit]\nenabled = true\n')
    env = {"GATEWAY_SERVER__HTTP_PORT": "9100", "GATEWAY_REDIS_URL": "redis://127.0.0.1:1/0", "OTHER": "x"}
    config = load_config(path, environ=env, overrides={"server": {"host": "127.0.0.3"}})
    assert config.server.http_port == 9100
    assert config.server.host == "127.0.0.3"
    assert config.redis_url == "redis://127.0.0.1:1/0"
    assert config.rate_limit.enabled is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[server]\nhttp_port = 70000\n", "server.http_port"),
        ("[server]\nport = 1\n", "server.port: Extra inputs are not permitted"),
        ('redis_url = "http://x"\n', "redis_url"),
        ('[[auth.api_keys]]\nname = "a"\nhash = "md5:abc"\n', "auth.api_keys.0.hash"),
        ('[auth.jwt]\nissuer = "i"\naudience = "a"\n', "HS256 needs secret_env"),
        ("[server\n", "not valid TOML"),
    ],
)
def test_errors_name_the_key_and_the_problem(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_config(path, environ={})
    assert any(expected in line for line in info.value.problems), info.value.problems


def test_missing_file_and_bad_environment(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.toml", environ={})
    with pytest.raises(ConfigError, match="GATEWAY_"):
        load_config(None, environ={"GATEWAY_SERVER__HTTP_PORT": "many"})
