import subprocess
import sys

from safety_gate import FallbackMessages, Gate, HaltRecord


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


STALE = "scorer heartbeat stale: crisis detection is not running"


def test_gate_without_any_reading_is_not_allowed():
    gate = Gate(lambda: None, start=False)  # type: ignore[arg-type]
    decision = gate.check()
    assert not decision.allowed and decision.stale


def test_cached_running_is_trusted_only_for_staleness_s():
    clock = Clock()
    gate = Gate(lambda: None, start=False, staleness_s=5.0, clock=clock)  # type: ignore[arg-type]
    gate._install(HaltRecord(state="RUNNING", version=3), liveness=None, at=clock.now)
    assert gate.check().allowed
    clock.now += 5.0
    assert gate.check().allowed
    clock.now += 0.01
    decision = gate.check()
    assert not decision.allowed and decision.stale and decision.version == 3


def test_missing_record_and_missing_heartbeat_are_not_allowed():
    clock = Clock()
    gate = Gate(lambda: None, start=False, clock=clock)  # type: ignore[arg-type]
    gate._install(HaltRecord.from_redis({}), liveness=None, at=clock.now)
    assert not gate.check().allowed
    gate._install(HaltRecord(state="RUNNING"), liveness=STALE, at=clock.now)
    assert "heartbeat" in gate.check().reason and not gate.check().allowed
    relaxed = Gate(lambda: None, start=False, clock=clock, require_heartbeat=False)  # type: ignore[arg-type]
    relaxed._install(HaltRecord(state="RUNNING"), liveness=STALE, at=clock.now)
    assert relaxed.check().allowed


def test_unknown_state_reads_as_halted():
    assert HaltRecord.from_redis({b"state": b"PAUSED", b"version": b"4"}).halted


def test_fallback_is_available_without_redis_and_per_locale(tmp_path):
    gate = Gate(lambda: None, start=False)  # type: ignore[arg-type]
    text = gate.fallback("en-US")
    for needle in ("988", "988lifeline.org", "741741", "911"):
        assert needle in text
    cfg = tmp_path / "fallback.toml"
    cfg.write_text('[messages]\n"es-US" = "Llama o envía un mensaje de texto al 988."\n')
    messages = FallbackMessages.from_file(cfg)
    assert messages.get("es-MX").startswith("Llama")
    assert "988" in messages.get("fr-FR")


def test_importing_the_gate_pulls_in_no_torch_or_transformers():
    code = "import sys, safety_gate; print(any(m in sys.modules for m in ('torch', 'transformers')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
