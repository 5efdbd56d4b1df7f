import json

import pytest

from vigil.cli import main
from vigil_core.errors import ConfigError
from vigil_core.settings import load_settings


def test_defaults_follow_the_design(monkeypatch):
    s = load_settings()
    assert s.topic_events == "conversation.events" and s.topic_dlq == "safety.dlq"
    assert s.staleness_s == 5.0 and s.conversation_idle_s == 1800 and s.pi_floor == 0.002
    assert s.max_text_bytes == 32 * 1024 and s.key("halt") == "vigil:halt"


def test_environment_variables_override(monkeypatch):
    monkeypatch.setenv("VIGIL_STALENESS_S", "2.5")
    monkeypatch.setenv("VIGIL_KAFKA_BOOTSTRAP", "k1:9092,k2:9092")
    s = load_settings()
    assert s.staleness_s == 2.5 and s.kafka_bootstrap == "k1:9092,k2:9092"


def test_toml_file_is_read_and_env_wins_over_it(monkeypatch, tmp_path):
    cfg = tmp_path / "vigil.toml"
    cfg.write_text('pi_floor = 0.01\nredis_prefix = "x:"\n')
    monkeypatch.setenv("VIGIL_CONFIG", str(cfg))
    monkeypatch.setenv("VIGIL_REDIS_PREFIX", "y:")
    s = load_settings()
    assert s.pi_floor == 0.01 and s.redis_prefix == "y:"


@pytest.mark.parametrize(
    ("var", "value"),
    [("VIGIL_STALENESS_S", "-1"), ("VIGIL_PI_FLOOR", "abc"), ("VIGIL_KAFKA_BOOTSTRAP", "nohost"),
     ("VIGIL_REDIS_URL", "http://x"), ("VIGIL_MODEL_BACKEND", "tpu")],
)
def test_invalid_configuration_names_the_variable(monkeypatch, var, value):
    monkeypatch.setenv(var, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == var


def test_missing_config_file_names_vigil_config(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIL_CONFIG", str(tmp_path / "absent.toml"))
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert info.value.variable == "VIGIL_CONFIG"


def test_config_show_masks_the_redis_password(monkeypatch, capsys):
    monkeypatch.setenv("VIGIL_REDIS_URL", "redis://:s3cret@redis.internal:6380/1")
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    assert "s3cret" not in out
    assert json.loads(out)["redis_url"] == "redis://:***@redis.internal:6380/1"


def test_cli_reports_bad_configuration_with_exit_2(monkeypatch, capsys):
    monkeypatch.setenv("VIGIL_BATCH_SIZE", "zero")
    assert main(["config", "show"]) == 2
    assert "VIGIL_BATCH_SIZE" in capsys.readouterr().err


def test_vigil_help_lists_every_command(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("config", "topics", "train", "model", "score", "evaluate", "rules", "demo", "halt", "incidents",
                    "review", "users", "gate"):
        assert f"    {command}" in out, command


def test_config_show_masks_every_secret():
    """`vigil config show` printed the review secret in clear and a password given in the Redis URL's query."""
    from vigil_core.settings import Settings

    shown = Settings(review_secret="sign-sessions-with-this",
                     redis_url="rediss://vigil:hunter2hunter2@redis.internal:6380/0?password=qwerty123&ssl_cert_reqs=none",
                     ).redacted()
    text = repr(shown)
    for secret in ("sign-sessions-with-this", "hunter2hunter2", "qwerty123"):
        assert secret not in text
    assert shown["review_secret"] == "***"
    assert shown["redis_url"].startswith("rediss://vigil:***@redis.internal:6380/0?")
    assert "ssl_cert_reqs=none" in shown["redis_url"]  # what is not secret stays readable
