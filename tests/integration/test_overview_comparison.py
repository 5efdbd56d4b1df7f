"""The review app's overview shows the champion/shadow comparison: computed once per live-record version and
reused for a short while, so many clinicians on the overview do not each re-read every labelled conversation."""

from __future__ import annotations

from types import SimpleNamespace

import redis

import review.routes.model as model_routes
from review.routes.model import model_view
from vigil_core.model_record import ModelRecord


def test_the_overview_reuses_a_comparison_for_a_while_and_never_across_a_model_change(settings, monkeypatch):
    client = redis.Redis.from_url(settings.redis_url.get_secret_value())
    record = ModelRecord(client, settings.redis_prefix)
    calls: list[str] = []
    real = model_routes.compare_live

    def counted(*args, **kwargs):
        calls.append(args[3])
        return real(*args, **kwargs)

    monkeypatch.setattr(model_routes, "compare_live", counted)
    ctx = SimpleNamespace(settings=settings, redis=client, comparisons={})
    assert model_view(ctx)["comparison"] is None and calls == []  # no candidate: nothing to compare
    record.set_shadow("cand-1", 1.0, by="ana", reason="try it")
    first = model_view(ctx)
    assert model_view(ctx) == first and calls == ["cand-1"]  # the second view reuses the first's
    assert first["computed_at"].endswith("UTC")
    record.set_shadow("cand-2", 1.0, by="ana", reason="a better one")
    assert model_view(ctx)["live"]["shadow"] == "cand-2" and calls == ["cand-1", "cand-2"]  # a change: afresh
    monkeypatch.setattr(model_routes, "COMPARISON_TTL_S", 0.0)
    model_view(ctx)
    assert calls == ["cand-1", "cand-2", "cand-2"]  # and once its time is up
    assert list(ctx.comparisons) == [record.read().version]  # one record version kept, no more
