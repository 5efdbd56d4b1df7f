import json

import pytest

from vigil.cli import main
from vigil_core.errors import ConfigError
from vigil_core.settings import load_settings


def test_defaults_follow_the_design(monkeypatch):
    s = load_settings()
    assert s.topic_events == "conversation.events" and s.topic_dlq == "safety.dlq"
    assert s.staleness_s == 5.0 and s.conversation_idle_s == 1800 and s.pi_floor == 0.002
    assert s.max_text_bytes == 32 * 1024


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

    shown = Settings(review_secret="sign-sessions-with-this", kafka_password="kafka-scram-pass",
                     redis_url="rediss://vigil:hunter2hunter2@redis.internal:6380/0?password=qwerty123&ssl_cert_reqs=none",
                     ).redacted()
    text = repr(shown)
    for secret in ("sign-sessions-with-this", "hunter2hunter2", "qwerty123", "kafka-scram-pass"):
        assert secret not in text
    assert shown["review_secret"] == "***"
    assert shown["redis_url"].startswith("rediss://vigil:***@redis.internal:6380/0?")
    assert "ssl_cert_reqs=none" in shown["redis_url"]  # what is not secret stays readable


def test_every_kafka_client_gets_the_sasl_credentials_or_refuses_to_start(monkeypatch):
    from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

    from vigil_core.settings import Settings

    plain = Settings(kafka_bootstrap="k1:9092,k2:9092").kafka_client_config()
    assert plain == {"bootstrap_servers": ["k1:9092", "k2:9092"], "security_protocol": "PLAINTEXT"}
    sasl = Settings(kafka_security_protocol="SASL_SSL", kafka_username="vigil-scorer", kafka_password="s3cret-s3cret",
                    kafka_ssl_cafile="/etc/kafka/ca.pem").kafka_client_config()
    assert sasl["sasl_mechanism"] == "SCRAM-SHA-512" and sasl["sasl_plain_username"] == "vigil-scorer"
    assert sasl["sasl_plain_password"] == "s3cret-s3cret" and sasl["ssl_cafile"] == "/etc/kafka/ca.pem"
    for client in (KafkaConsumer, KafkaProducer, KafkaAdminClient):  # names kafka-python knows
        assert set(sasl) <= set(client.DEFAULT_CONFIG), client
    with pytest.raises(ConfigError, match="VIGIL_KAFKA_PASSWORD"):
        Settings(kafka_security_protocol="SASL_PLAINTEXT", kafka_username="vigil-scorer").kafka_client_config()
