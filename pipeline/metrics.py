"""Prometheus metrics of the scorer (one registry per process; `vigil score --metrics-port`)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from vigil_core.build import register_build_info

__all__ = ["ScorerMetrics"]


class ScorerMetrics:
    """Events by kind and outcome, DLQ, batch sizes, scoring latency, lag, backup use, review decisions."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        register_build_info(r)
        self.events = Counter("vigil_scorer_events", "events consumed", ["kind", "outcome"], registry=r)
        self.dlq = Counter("vigil_scorer_dlq", "records sent to the dead-letter topic", registry=r)
        self.batch_size = Histogram(
            "vigil_scorer_batch_size", "records per polled batch", buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512),
            registry=r,
        )
        self.scoring_seconds = Histogram(
            "vigil_scorer_scoring_seconds", "classifier time per batch",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r,
        )
        self.lag = Gauge("vigil_scorer_consumer_lag", "records not yet consumed (from highwater)", registry=r)
        self.partition_lag = Gauge("vigil_scorer_partition_lag", "records not yet consumed, per owned partition",
                                   ["partition"], registry=r)
        self.backup = Counter("vigil_scorer_backup_scored", "messages scored by the backup scorer", registry=r)
        self.flagged = Counter("vigil_scorer_flagged_conversations", "conversations flagged", registry=r)
        self.replies = Counter("vigil_scorer_replies_scored",
                               "AI replies in conversations with crisis signs scored for response safety",
                               ["verdict"], registry=r)
        for verdict in ("safe", "unsafe"):
            self.replies.labels(verdict)
        self.strong_phrase = Counter(
            "vigil_scorer_strong_phrase_flagged",
            "user turns flagged by an explicit phrase (the lexicon's strong tier) alone: the model scored them below "
            "its threshold (a rising rate is the model missing explicit statements)", registry=r)
        self.urgent = Counter("vigil_scorer_urgent_conversations",
                              "conversations that crossed the urgent level (paged, handed to a human)", registry=r)
        self.sampled = Counter(
            "vigil_scorer_sampled_conversations", "unflagged conversations sent to review at close", ["reason"],
            registry=r,
        )
        self.closed = Counter("vigil_scorer_closed_conversations", "conversations closed", ["how"], registry=r)
        # Languages (issue 32): user turns per language, and closed conversations written mostly in a language the
        # model is not validated for (each was considered for review at pi_language; `sampled{reason="language"}`
        # counts those sent).
        self.turn_languages = Counter("vigil_scorer_turn_languages", "user turns scored, by identified language",
                                      ["language"], registry=r)
        self.closed_languages = Counter(
            "vigil_scorer_unvalidated_language_conversations",
            "closed conversations mostly in a language the crisis model is not validated for", ["language"],
            registry=r)
        # Turns the multilingual model scored and flagged (models/multilingual.py), and its failures (those turns are
        # then only routed and lexicon-checked).
        self.multilingual = Counter("vigil_scorer_multilingual_turns",
                                    "user turns scored by the multilingual crisis model, by language and outcome",
                                    ["language", "outcome"], registry=r)
        self.review_truncated = Counter("vigil_scorer_review_requests_bounded",
                                        "review requests that left turns out to stay under review_max_bytes",
                                        registry=r)
        self.failed = Counter("vigil_scorer_records_failed",
                              "records dead-lettered after failing every bounded attempt", registry=r)
        # Series exist from the start (at 0), so dashboards and alerts see them before the first event.
        for kind, outcome in (("message", "scored"), ("message", "context"), ("invalid", "dlq"),
                              ("feedback", "skipped"), ("closed", "processed"), ("failed", "dlq")):
            self.events.labels(kind, outcome)
        for reason in ("sampled", "borderline", "disagreement", "language", "warning_sign"):
            self.sampled.labels(reason)
        for how in ("event", "idle", "failed"):
            self.closed.labels(how)
        self.last_batch = Gauge("vigil_scorer_last_batch_timestamp_seconds", "unix time of the last committed batch",
                                registry=r)
        # The model lifecycle (docs/design.md section 8): the versions scoring live and in shadow, the shadow's work.
        self.model_info = Gauge("vigil_model_info", "the crisis model versions this scorer runs (value 1)",
                                ["version", "role"], registry=r)
        self.model_switches = Counter("vigil_scorer_model_switches", "champion or shadow changes applied",
                                      registry=r)
        self.model_load_failures = Counter(
            "vigil_scorer_model_load_failures",
            "model versions the live record named that this scorer could not load (it kept the model it had)",
            registry=r)
        self.shadow_scored = Counter("vigil_scorer_shadow_scored", "user turns scored by the shadow candidate",
                                     registry=r)
        self.shadow_skipped = Counter(
            "vigil_scorer_shadow_skipped",
            "user turns the shadow candidate did not score (its queue was full; their conversations leave the "
            "comparison)", registry=r)
