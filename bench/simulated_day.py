"""A simulated shift of urgent cases through the real case store, case watch and incident engine (issue 34).

    python bench/simulated_day.py --hours 6 --conversations-per-hour 10000 --urgent 0.01 --team 5

Starts a local Redis (valkey) and a Kafka-protocol broker (tansu) as the demo does, and runs Vigil's own
`PersonAtRisk` (handoff, case, page), `CaseWatch` (re-page, breach P0, capacity P1) and `IncidentService` on them
under a simulated clock: urgent conversations arrive as a Poisson process (conversations per hour x urgent share);
each clinician of the team, when free, claims the case with the nearest deadline after a claim delay, reaches the
person after a contact time, records the outcome (which closes the case) and is free again after a wrap-up time,
each drawn from a log-normal distribution with the medians given. The watch looks every `--watch-s` simulated
seconds. Prints one JSON object: pages to the crisis rotation per hour (first pages and re-pages), cases past
their deadline, P0 and P1 incidents, the capacity rule's view, and time from opening to human contact (p50, p95).
"""

from __future__ import annotations

import argparse
import heapq
import json
import math
import platform
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from demo.local import LocalBroker, LocalRedis  # noqa: E402
from incidents.cases import CASE_CAPACITY, CaseWatch  # noqa: E402
from incidents.config import IncidentConfig  # noqa: E402
from incidents.service import IncidentService  # noqa: E402
from incidents.urgent import PersonAtRisk  # noqa: E402
from kafka_io import ensure_topics  # noqa: E402
from vigil_core.cases import UrgentCase  # noqa: E402
from vigil_core.redis_client import connect  # noqa: E402
from vigil_core.settings import Settings  # noqa: E402


class SimClock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 4, 8, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def simulate(args: argparse.Namespace, settings: Settings) -> dict[str, object]:
    rng = np.random.default_rng(args.seed)
    clock = SimClock()
    client = connect(settings.redis_url.get_secret_value())
    base = IncidentConfig.load().raw
    config = IncidentConfig.from_raw({**base, "cases": {**base["cases"], "team_size": args.team}})
    service = IncidentService(settings, client, config=config, clock=clock)
    person = PersonAtRisk(settings, client, service)
    pages = {"first": 0, "re_page": 0}
    page = person.pager.page

    def counted(case: object, action: str, level: int) -> None:
        pages["first" if level == 0 else "re_page"] += 1
        page(case, action, level)  # type: ignore[arg-type]

    person.pager.page = counted  # type: ignore[method-assign]
    watch = CaseWatch(person.cases, service, person.pager, clock=clock)

    def lognormal(median_min: float) -> timedelta:
        return timedelta(minutes=float(median_min * math.exp(args.sigma * rng.standard_normal())))

    start = clock.now
    end = start + timedelta(hours=args.hours)
    rate_per_s = args.conversations_per_hour * args.urgent / 3600
    events: list[tuple[datetime, int, str, str, int]] = []  # (when, seq, what, conversation, clinician)
    seq = 0

    def push(when: datetime, what: str, cid: str = "", who: int = -1) -> None:
        nonlocal seq
        seq += 1
        heapq.heappush(events, (when, seq, what, cid, who))

    t = start
    n = 0
    while True:
        t += timedelta(seconds=float(rng.exponential(1 / rate_per_s)))
        if t >= end:
            break
        push(t, "arrive", f"sim-{n:06d}")
        n += 1
    watch_at = start
    while watch_at < end + timedelta(minutes=30):
        push(watch_at, "watch")
        watch_at += timedelta(seconds=args.watch_s)
    free = list(range(args.team))
    contact_s: list[float] = []
    over_capacity_rounds = 0
    rounds = 0
    waiting: set[str] = set()  # open cases nobody has claimed
    started = time.perf_counter()
    while events:
        when, _, what, cid, who = heapq.heappop(events)
        clock.now = when
        if what == "arrive":
            person.respond(UrgentCase(cid, 2, 0.97, "imminent phrase"))
            waiting.add(cid)
        elif what == "claim":
            person.cases.claim(cid, f"clinician-{who}")
            push(when + lognormal(args.contact_min), "contact", cid, who)
        elif what == "contact":
            case = person.cases.close(cid, f"clinician-{who}", "contacted")
            contact_s.append((datetime.fromisoformat(case.contacted_at)
                              - datetime.fromisoformat(case.opened_at)).total_seconds())
            push(when + lognormal(args.wrap_up_min), "free", cid, who)
        elif what == "free":
            free.append(who)
        elif what == "watch":
            result = watch.check()
            rounds += 1
            over_capacity_rounds += result["over_capacity"]
        # every free clinician takes the waiting case with the nearest deadline (the oldest)
        while free and waiting:
            chosen = min(waiting)
            waiting.discard(chosen)
            push(clock.now + lognormal(args.claim_min), "claim", chosen, free.pop())
    incidents = service.store.list()
    p0s = [i for i in incidents if i.severity == "P0"]
    breaches = sum(bool(c.breached_at) for c in (person.cases.get(f"sim-{k:06d}") for k in range(n)) if c)
    q = np.percentile(contact_s, [50, 95]) if contact_s else [float("nan")] * 2
    service.close()
    return {
        "machine": f"{platform.machine()}, {platform.processor() or '?'}",
        "hours": args.hours, "conversations_per_hour": args.conversations_per_hour, "urgent": args.urgent,
        "team": args.team, "medians_min": {"claim": args.claim_min, "contact": args.contact_min,
                                           "wrap_up": args.wrap_up_min}, "sigma": args.sigma,
        "cases": n, "pages_per_hour": round(pages["first"] / args.hours, 1),
        "re_pages_per_hour": round(pages["re_page"] / args.hours, 2),
        "cases_past_deadline": breaches, "p0_incidents": len(p0s),
        "p0_timeline_entries": sum(len(i.timeline) for i in p0s),
        "capacity_p1": [i.id for i in incidents if i.dedup_key == CASE_CAPACITY],
        "watch_rounds_over_capacity": f"{over_capacity_rounds}/{rounds}",
        "time_to_contact_min": {"p50": round(float(q[0]) / 60, 1), "p95": round(float(q[1]) / 60, 1)},
        "wall_s": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--conversations-per-hour", type=float, default=10_000)
    parser.add_argument("--urgent", type=float, default=0.01, help="share of conversations at the urgent level")
    parser.add_argument("--team", type=int, default=5, help="crisis clinicians on shift")
    parser.add_argument("--claim-min", type=float, default=0.5, help="median minutes from a free clinician to claim")
    parser.add_argument("--contact-min", type=float, default=2.0, help="median minutes from claim to contact")
    parser.add_argument("--wrap-up-min", type=float, default=0.5, help="median minutes after contact until free")
    parser.add_argument("--sigma", type=float, default=0.5, help="log-normal spread of each time")
    parser.add_argument("--watch-s", type=float, default=30.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        broker, redis_server = LocalBroker(Path(tmp) / "broker"), LocalRedis(Path(tmp) / "redis")
        broker.start()
        redis_server.start()
        try:
            settings = Settings(kafka_bootstrap=broker.bootstrap, redis_url=redis_server.url)  # type: ignore[arg-type]
            ensure_topics(settings)
            print(json.dumps(simulate(args, settings), indent=1))
        finally:
            broker.stop()
            redis_server.stop()


if __name__ == "__main__":
    main()
