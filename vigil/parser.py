"""The `vigil` command line: one function per command group; each command's handler is imported only when it runs
(`lazy`), so `vigil --help` and the gate's image stay light."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from datetime import datetime
from typing import Any

from vigil_core.build import vigil_version
from vigil_core.roles import ROLES
from vigil_core.rule_names import TARGET_RECALL
from vigil_core.settings import Settings

__all__ = ["build_parser", "Handler"]

Handler = Callable[[argparse.Namespace, Settings], int]


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every subcommand that exists."""
    parser = argparse.ArgumentParser(prog="vigil", description="Vigil: safety monitor for an AI chat service.")
    parser.add_argument("--version", action="version", version=f"vigil {vigil_version()}",
                        help="print Vigil's version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for group in (_ops_commands, _model_commands, _service_commands, _halt_commands, _incident_commands,
                  _access_commands, _gate_commands):
        group(sub)
    return parser


def _auth_parent() -> argparse.ArgumentParser:
    """The options of a command a person acts in with their review-app account (halt, model lifecycle)."""
    auth = argparse.ArgumentParser(add_help=False)
    auth.add_argument("--by", required=True, help="your review-app account; its role is what you act as")
    auth.add_argument("--json", action="store_true", help="print the result as one JSON object")
    auth.add_argument("--password-stdin", action="store_true",
                      help="read your password from standard input (default: a prompt)")
    return auth


def _ops_commands(sub: Any) -> None:
    """`vigil` commands: the configuration, the topics, health checks and the record contracts."""
    config_sub = _group(sub, "config", "show the effective configuration")
    config_sub.add_parser("show", help="print the effective settings, secrets masked").set_defaults(
        handler=_lazy("vigil.ops:config_show")
    )

    topics_sub = _group(sub, "topics", "Kafka topics")
    create = topics_sub.add_parser("create", help="create every Vigil topic that does not exist")
    create.add_argument("--json", action="store_true", help="print the topics as one JSON object")
    create.add_argument("--partitions", type=int, default=None,
                        help="partitions of each new topic (default VIGIL_TOPIC_PARTITIONS)")
    create.set_defaults(handler=_lazy("vigil.ops:topics_create"))

    p = sub.add_parser("health", help="exit 0 when COMPONENT on this host is beating (container healthchecks)")
    p.add_argument("component", choices=["scorer", "evaluator", "review"], help="the process to check")
    p.add_argument("--json", action="store_true", help="print the answer as one JSON object")
    p.set_defaults(handler=_lazy("vigil.ops:health"))

    schema_sub = _group(sub, "schema", "the record contracts of every topic")
    p = schema_sub.add_parser("export", help="write JSON Schema for every topic's records (and topics.json)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder to write the schemas into")
    p.add_argument("--json", action="store_true", help="print what was written as one JSON object")
    p.set_defaults(handler=_lazy("vigil.schema_export:export_command"))


def _model_commands(sub: Any) -> None:
    """`vigil` commands: training and the crisis model."""
    p = sub.add_parser("train", help="train a crisis model from a CSV of id,text,label")
    p.add_argument("--data", required=True, help="CSV with columns id,text,label (crisis|no_crisis)")
    p.add_argument("--out", default="vigil-model", help="output model directory")
    p.add_argument("--split-file", default=None, help="CSV id,split[,author_hash]: its test rows are held out")
    p.add_argument("--fine-tune", action="store_true", help="fine-tune the top encoder layers (slower, better)")
    p.add_argument("--layers", type=int, default=2, help="top layers fine-tuned with --fine-tune")
    p.add_argument("--encoder-layers", type=int, default=None, metavar="N",
                   help="keep only the base encoder's first N layers (a smaller, faster encoder; default all)")
    p.add_argument("--epochs", type=int, default=3, help="training epochs")
    p.add_argument("--seed", type=int, default=0, help="random seed (splits, initialisation, batches)")
    p.add_argument("--target-recall", type=float, default=TARGET_RECALL,
                   help="recall the threshold is chosen for on the validation split")
    p.add_argument("--chat-sentences", type=int, default=0, metavar="N",
                   help="add up to N weakly labelled chat-length sentences from the training posts")
    p.add_argument("--extra-train", action="append", default=[], metavar="CSV",
                   help="labelled CSV (id,text,label[,class][,split]) whose train rows join training only; its "
                        "test rows are reported in the card (e.g. data/chat_contrast/chat_contrast.csv); repeatable")
    p.add_argument("--extra-repeat", type=int, default=1, metavar="N",
                   help="each --extra-train training row is seen N times per epoch")
    p.add_argument("--keep-epoch", choices=("best", "last"), default="best",
                   help="with --fine-tune: keep the epoch with the best validation ROC-AUC, or the last one")
    p.add_argument("--max-length", type=int, default=256, metavar="TOKENS",
                   help="tokens per window, in training and in scoring (at most 512 for MiniLM)")
    p.add_argument("--class-column", default=None, metavar="COL",
                   help="train a multi-class head over this source-class column (data CSV or split file, "
                        "e.g. subreddit); the crisis score is the log-odds of the crisis classes")
    p.add_argument("--init-from", default=None, metavar="MODEL_DIR",
                   help="keep this trained model's encoder and fit a chat head (needs --chat-data)")
    p.add_argument("--chat-data", default=None, metavar="DIR",
                   help="folder of chat_train/validation/test.csv (data/chat_form): the head, context and threshold "
                        "are chosen on its conversations")
    p.add_argument("--chat-recall", type=float, default=None, metavar="R",
                   help="with --chat-data: the crisis recall on the chat-form validation conversations the operating "
                        "threshold keeps (default 0.95, the design's floor)")
    p.add_argument("--chat-posts-weight", type=float, default=None, metavar="W",
                   help="with --chat-data: the sample weight of a Reddit post in the chat head's fit (default 10)")
    p.add_argument("--chat-heads", type=int, default=None, metavar="K",
                   help="with --chat-data: fit K chat heads (seeds 0..K-1) and serve their average, one head K times "
                        "as wide (default 1)")
    p.add_argument("--chat-char", type=float, default=None, metavar="W",
                   help="with --chat-data: also fit a character n-gram head on the chat training turns and add W times "
                        "its log-odds to every text's (models/char_head.py; default 0: none)")
    p.add_argument("--chat-kinds", action="store_true",
                   help="with --chat-data: also fit and choose on the kinds set beside it (kinds_train/validation.csv "
                        "and kinds_more_train.csv, issue 31); the test row stays chat_test.csv")
    p.add_argument("--chat-chitchat", action="store_true",
                   help="with --chat-data: also fit and choose on the chit-chat splits beside it (chitchat_train/"
                        "validation.csv: small talk between people, ordinary); the test row stays chat_test.csv")
    p.add_argument("--from-labels", action="store_true",
                   help="add the clinicians' labelled conversations (from clinician.labels and safety.review, "
                        "redacted) to --chat-data (default data/chat_form) and fit the chat head from --init-from "
                        "(default: the shipped model); --out must lie outside the repository")
    p.add_argument("--replies", action="store_true",
                   help="with --from-labels: train the response-safety model instead, on the clinicians' judgements "
                        "of AI replies (from clinician.labels and safety.review, redacted) beside its written pairs")
    p.set_defaults(handler=_lazy("vigil.ops:train"))

    model_sub = _group(sub, "model", "evaluate or export the crisis model")
    p = model_sub.add_parser("eval", help="metrics of the model on a labelled CSV")
    p.add_argument("--data", required=True, help="labelled CSV (id,text,label[,conversation,turn,...])")
    p.add_argument("--group-column", default=None,
                   help="rows sharing it are one conversation, scored turn by turn in context (order: a `turn` "
                        "column, else file order); flagged if any turn is")
    p.add_argument("--by-column", default=None, metavar="COL", help="also report the metrics per value of COL")
    p.add_argument("--phrases", action="store_true",
                   help="flag as the scorer flags: also a turn holding a phrase of imminent risk or an explicit "
                        "phrase (the lexicon's strong tier), whatever the model scored")
    p.add_argument("--split-file", default=None, help="CSV id,split: only rows of --split are scored")
    p.add_argument("--split", default="test", help="with --split-file: which split to score (default test)")
    p.add_argument("--model-dir", default=None, help="model directory (default: VIGIL_MODEL_DIR or the shipped model)")
    p.add_argument("--backend", choices=["auto", "torch", "onnx"], default=None,
                   help="inference backend (default VIGIL_MODEL_BACKEND)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=_lazy("models.training.commands:eval_command"))
    p = model_sub.add_parser("calibrate", help="re-calibrate a trained model and choose its threshold again")
    p.add_argument("--model-dir", required=True, help="the trained model directory to re-calibrate")
    p.add_argument("--data", required=True, help="the labelled CSV it was trained on")
    p.add_argument("--split-file", default=None, help="CSV id,split[,author_hash] it was trained with")
    p.add_argument("--target-recall", type=float, default=TARGET_RECALL, help="recall the threshold is chosen for")
    p.add_argument("--note", default=None, help="why this operating point (written to the model card)")
    p.add_argument("--chat-data", default=None, metavar="DIR",
                   help="a chat model (`vigil train --chat-data`): its chat-form folder; the threshold and the posts "
                        "head's tiers are chosen again on its validation split, the head stays as fitted")
    p.add_argument("--chat-recall", type=float, default=None, metavar="R",
                   help="with --chat-data: the crisis recall the threshold keeps (default: the model's own)")
    p.add_argument("--idioms", action="store_true",
                   help="with --chat-data: the model reads idioms of death for what they mean (models/idioms.py) "
                        "from now on, a scoring setting (a new name); chosen again on it")
    p.set_defaults(handler=_lazy("models.training.commands:calibrate_command"))
    p = model_sub.add_parser("export", help="build the int8 ONNX graph into the cache now")
    p.set_defaults(handler=_lazy("models.training.commands:export_command"))
    auth = _auth_parent()
    # The model lifecycle (docs/design.md section 8): the store, the shadow, the comparison, promotion and rollback.
    life = "vigil.model_lifecycle:"
    p = model_sub.add_parser("register", help="copy a trained model directory into the model store (version = hash)")
    p.add_argument("model_dir", metavar="DIR", help="a `vigil train` output or a Hugging Face checkpoint folder")
    p.add_argument("--note", default="", help="why this version exists (shown by `vigil model list`)")
    p.add_argument("--json", action="store_true", help="print the entry as JSON")
    p.set_defaults(handler=_lazy(life + "register_command"))
    p = model_sub.add_parser("list", help="registered versions, their key metrics, the champion and the shadow")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(handler=_lazy(life + "list_command"))
    p = model_sub.add_parser("shadow", parents=[auth],
                             help="score a registered version in shadow beside the champion (it never flags)")
    p.add_argument("version", nargs="?", metavar="VERSION", help="a version of the model store")
    p.add_argument("--share", type=float, default=1.0,
                   help="share of conversations shadowed, chosen by a hash of their id (default 1: all)")
    p.add_argument("--stop", action="store_true", help="end the shadow")
    p.add_argument("--reason", default="candidate evaluation", help="why (audited)")
    p.set_defaults(handler=_lazy(life + "shadow_command"))
    p = model_sub.add_parser("compare", help="champion against the shadow candidate on the clinicians' labels")
    p.add_argument("--candidate", default=None, metavar="VERSION", help="default: the version in shadow")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.set_defaults(handler=_lazy(life + "compare_command"))
    p = model_sub.add_parser("promote", parents=[auth],
                             help="a clinical lead makes a candidate the champion (its recall must be no worse)")
    p.add_argument("version", metavar="VERSION", help="a version of the model store, compared in shadow")
    p.add_argument("--reason", required=True, help="why (audited)")
    p.add_argument("--incident", default=None, help="announce on this incident's timeline")
    p.set_defaults(handler=_lazy(life + "promote_command"))
    p = model_sub.add_parser("rollback", parents=[auth],
                             help="return to the previous champion now (a clinical lead or the on-call engineer)")
    p.add_argument("--reason", required=True, help="why (audited)")
    p.add_argument("--incident", default=None, help="announce on this incident's timeline (the P0 of a halt)")
    p.set_defaults(handler=_lazy(life + "rollback_command"))


def _service_commands(sub: Any) -> None:
    """`vigil` commands: the scorer, replays, the evaluator, the rule table and the demo."""
    p = sub.add_parser("score", help="run the scorer: conversation.events -> safety.scores, review, DLQ")
    p.add_argument("--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port")
    p.add_argument("--exit-when-idle", type=float, default=None, metavar="S",
                   help="exit after S seconds without records (replays, tests)")
    p.set_defaults(handler=_lazy("vigil.score:score_command"))

    p = sub.add_parser("replay", help="rebuild every piece of derived Redis state from the topics (after a Redis loss)")
    start = p.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true", default=True,
                       help="read every topic from its beginning (the default; replaying is idempotent)")
    start.add_argument("--since", type=_iso_time, default=None, metavar="TS",
                       help="replay only records at or after TS (ISO 8601 with a zone), onto state restored from "
                            "a snapshot taken before TS")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")
    p.set_defaults(handler=_lazy("vigil.replay:replay_command"))

    p = sub.add_parser("evaluate", help="run the evaluator: labels -> rolling recall, rule states, actions")
    p.add_argument("--once", action="store_true",
                   help="consume what is there, evaluate once, print, exit (3 when a rule is CRITICAL, else 0)")
    p.add_argument("--json", action="store_true", help="with --once: one JSON object")
    p.add_argument("--idle", type=float, default=3.0, help="with --once: seconds without records that end it")
    p.add_argument("--metrics-port", type=int, default=None,
                   help="serve Prometheus metrics on this port (default VIGIL_METRICS_PORT)")
    p.add_argument("--no-actions", action="store_true", help="log alerts only; do not trip halts or open incidents")
    p.set_defaults(handler=_lazy("vigil.evaluate:evaluate_command"))

    rules_sub = _group(sub, "rules", "the alert-rule table")
    p = rules_sub.add_parser("export", help="write Prometheus alert rules generated from the thresholds file")
    p.add_argument("--prometheus", action="store_true", required=True,
                   help="regenerate deploy/prometheus/alerts.yml from the rule table")
    p.add_argument("--out", default="deploy/prometheus/alerts.yml", help="file to write, or - for stdout")
    p.set_defaults(handler=_lazy("evaluators.commands:rules_export_command"))

    p = sub.add_parser("demo", help="the whole loop on this machine, from a chat message to a tripped halt")
    p.add_argument("--duration", type=float, default=170.0, help="upper bound of the run in seconds")
    p.add_argument("--json", action="store_true", help="no live view; print one JSON summary as the last line")
    p.add_argument("--out", default="demo-out", help="folder for logs and the post-incident report")
    p.add_argument("--rate", type=float, default=12.0, help="chat events per second")
    p.set_defaults(handler=_lazy("demo.run:demo_command"))


def _halt_commands(sub: Any) -> None:
    """`vigil` commands: the safety halt."""
    halt_sub = _group(sub, "halt", "the safety halt: status, trip, two-person clear")
    auth = _auth_parent()
    p = halt_sub.add_parser("init", parents=[auth],
                            help="a clinical lead sets RUNNING on a deployment that never had a halt record")
    p.add_argument("--reason", default="initial deployment", help="why (audited)")
    p.set_defaults(handler=_lazy("vigil.halt:halt_init"))
    p = halt_sub.add_parser("status", help="print the halt record (exit 3 when halted)")
    p.add_argument("--json", action="store_true", help="print the record as JSON")
    p.set_defaults(handler=_lazy("safety_gate.commands:halt_status"))
    p = halt_sub.add_parser("trip", parents=[auth], help="halt the AI now (a clinical lead or the on-call engineer)")
    p.add_argument("--reason", required=True, help="why (audited)")
    p.add_argument("--incident", default=None, help="the incident this halt belongs to (its timeline gets the change)")
    p.set_defaults(handler=_lazy("vigil.halt:halt_trip"))
    p = halt_sub.add_parser("clear", parents=[auth],
                            help="approve lifting the halt, in your account's role (a clinical lead and an on-call "
                                 "engineer, two people)")
    p.add_argument("--reason", required=True, help="why (audited)")
    p.add_argument("--version", type=int, default=None, help="halt version approved (default: current)")
    p.set_defaults(handler=_lazy("vigil.halt:halt_clear"))


def _incident_commands(sub: Any) -> None:
    """`vigil` commands: incidents."""
    inc_sub = _group(sub, "incidents", "incidents: list, show, acknowledge, note, resolve, report")
    handler = _lazy("incidents.commands:incidents_command")
    p = inc_sub.add_parser("list", help="incidents, newest first")
    p.add_argument("--json", action="store_true", help="print as JSON")
    p.add_argument("--open", action="store_true", help="only those not resolved")
    p.set_defaults(handler=handler)
    p = inc_sub.add_parser("show", help="one incident with its timeline (JSON)")
    p.add_argument("id", help="incident id")
    p.set_defaults(handler=handler)
    for name, what, who, extra in (("ack", "acknowledge (stops escalation)",
                                    "who acknowledges (owner from now on)", ""),
                                   ("note", "add a note to the timeline", "who writes it", "text"),
                                   ("resolve", "resolve (a person decides; metrics recovering resolve nothing)",
                                    "who resolves it", "--reason")):
        p = inc_sub.add_parser(name, help=what)
        p.add_argument("id", help="incident id")
        if extra == "text":
            p.add_argument("text", help="the note")
        p.add_argument("--by", required=True, help=who)
        if extra == "--reason":
            p.add_argument("--reason", required=True, help="why it is resolved")
        p.add_argument("--json", action="store_true", help="print the result as one JSON object")
        p.set_defaults(handler=handler)
    p = inc_sub.add_parser("report", help="the post-incident report in Markdown")
    p.add_argument("id", help="incident id")
    p.add_argument("--out", default=None, help="write to this file instead of stdout")
    p.set_defaults(handler=handler)
    p = inc_sub.add_parser("rebuild", help="rebuild the Redis view from the safety.incidents topic")
    p.set_defaults(handler=handler)


def _access_commands(sub: Any) -> None:
    """`vigil` commands: the review app, its accounts, and access to Redis and Kafka."""
    review_sub = _group(sub, "review", "the clinicians' review app")
    p = _serve_parser(review_sub, "serve the review web app", port=8000)
    p.add_argument("--metrics-port", type=int, default=0,
                   help="serve the review app's Prometheus metrics (outcomes, time to human contact) here")
    p.set_defaults(handler=_lazy("review.commands:serve_command"))

    users_sub = _group(sub, "users", "review app accounts")
    p = users_sub.add_parser("add", help="create an account (or replace one, with --replace)")
    p.add_argument("name", help="account name")
    p.add_argument("--role", required=True, choices=ROLES, help="what the account may do (docs/security.md)")
    p.add_argument("--replace", action="store_true",
                   help="replace an existing account's role and password (refused without it)")
    p.add_argument("--password-stdin", action="store_true", help="read the password from standard input")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(handler=_lazy("review.commands:users_command"))
    p = users_sub.add_parser("disable", help="disable an account")
    p.add_argument("name", help="account name")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(handler=_lazy("review.commands:users_command"))

    red_sub = _group(sub, "redis", "Redis access per role")
    p = red_sub.add_parser("acl", help="print the ACL file: one user per role with only its keys and commands "
                                       "(passwords from VIGIL_REDIS_PASSWORD_<ROLE>)")
    p.add_argument("--prefix", default="vigil:", help="the key prefix of the deployment (VIGIL_REDIS_PREFIX)")
    p.set_defaults(handler=_lazy("vigil.redis_acl:acl_command"))

    kaf_sub = _group(sub, "kafka", "Kafka access per service")
    p = kaf_sub.add_parser("acl", help="print the script that creates one SASL/SCRAM user per service and its ACLs "
                                       "(runs in the apache/kafka image; docker-compose's kafka-setup)")
    p.set_defaults(handler=_lazy("vigil.kafka_acl:acl_command"))


def _gate_commands(sub: Any) -> None:
    """`vigil` commands: the HTTP gate."""
    gate_sub = _group(sub, "gate", "the HTTP gate for the AI service")
    p = _serve_parser(gate_sub, "serve GET /v1/gate, /healthz, /metrics", port=8080)
    p.set_defaults(handler=_lazy("safety_gate.commands:gate_serve"))


def _group(sub: Any, name: str, help_: str) -> Any:
    """A command group (`vigil NAME SUBCOMMAND`); the subcommand chosen lands in `NAME_command`."""
    return sub.add_parser(name, help=help_).add_subparsers(dest=f"{name}_command", required=True)


def _serve_parser(group: Any, help_: str, port: int) -> argparse.ArgumentParser:
    """A `serve` command with its address options."""
    p: argparse.ArgumentParser = group.add_parser("serve", help=help_)
    p.add_argument("--port", type=int, default=port, help="port to listen on")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    return p


def _iso_time(text: str) -> datetime:
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not an ISO 8601 time: {text!r}") from exc
    if ts.tzinfo is None:
        raise argparse.ArgumentTypeError(f"give a time zone (for example {text}Z): {text!r}")
    return ts


def _lazy(target: str) -> Handler:
    """A handler imported only when its command runs, so `vigil --help` stays fast and light."""

    def run(args: argparse.Namespace, settings: Settings) -> int:
        import importlib

        module, _, name = target.partition(":")
        handler: Handler = getattr(importlib.import_module(module), name)
        return handler(args, settings)

    return run
