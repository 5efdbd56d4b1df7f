"""Language identification and text normalisation on chat-length turns (issues 31 and 32).

    python bench/languages.py [--repeats 5]

Prints one JSON object: the identifier's accuracy on the team's turns in Spanish, Portuguese, French and German
(data/languages/turns.csv) and on a set of short turns written for this measurement in those languages and English
(one to eight words, greetings included), the share of the chat-form validation conversations (English) that would
be read as another language (each would be sent to review at `pi_language`: the route's review load on English
traffic), turns per second of `normalise` alone, of normalise + identification and of the scorer's phrase rules
(imminent and strong phrases, looked for in a turn the model does not flag) (median of `--repeats` passes over the
9,891 validation turns), and the multilingual crisis model (models/multilingual.py): its first
call (the encoder's load), the resident memory it adds, and turns per second at batches of 1, 8 and 32 of the team's
turns (what a scorer batch holds of them).
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.backup import ScorerPhrases  # noqa: E402
from models.language import LanguageIdentifier  # noqa: E402
from models.multilingual import MultilingualModel  # noqa: E402
from models.normalise import normalise  # noqa: E402
from vigil_core.conversations import conversation_language  # noqa: E402

SHORT = {
    "en": ["hi", "thanks that helps", "i can't sleep again", "how do i reset my password", "ok", "yeah",
           "my boss yelled at me today", "i feel so alone lately", "lol same", "im so tired of everything"],
    "es": ["hola", "gracias", "vale", "¿cómo estás?", "no puedo dormir otra vez", "me siento muy solo",
           "mi jefe me gritó hoy", "necesito ayuda con mi tarea", "estoy cansada de todo", "qué hago ahora"],
    "pt": ["olá", "obrigado", "tudo bem", "to mal", "não consigo dormir de novo", "me sinto muito sozinha",
           "meu chefe gritou comigo hoje", "preciso de ajuda com meu trabalho", "estou cansado de tudo",
           "você pode me ajudar?"],
    "fr": ["bonjour", "merci", "ça va", "d'accord", "je n'arrive pas à dormir", "je me sens très seule",
           "mon patron m'a crié dessus", "j'ai besoin d'aide pour mes devoirs", "je suis fatigué de tout",
           "tu peux m'aider ?"],
    "de": ["hallo", "danke", "okay", "wie geht's", "ich kann nicht schlafen", "ich fühle mich so allein",
           "mein chef hat mich angeschrien", "kannst du mir helfen", "ich bin müde von allem", "was soll ich tun"],
}


def accuracy(lid: LanguageIdentifier, rows: list[tuple[str, str]]) -> dict[str, float]:
    got = lid.identify([t for _, t in rows])
    right = sum(g.language == lang for g, (lang, _) in zip(got, rows, strict=True))
    counted = [(g, lang) for g, (lang, _) in zip(got, rows, strict=True) if g.weight > 0]
    return {"turns": len(rows), "right": right / len(rows), "counted": len(counted) / len(rows),
            "counted_right": sum(g.language == lang for g, lang in counted) / max(1, len(counted)),
            "foreign_read_as_english": sum(g.language == "en" for g, (lang, _) in zip(got, rows, strict=True)
                                           if lang != "en")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    lid = LanguageIdentifier()
    phrases = ScorerPhrases()
    team = [(r["language"], r["text"]) for r in csv.DictReader((ROOT / "data/languages/turns.csv").open())]
    short = [(lang, t) for lang, texts in SHORT.items() for t in texts]
    rows = list(csv.DictReader((ROOT / "data/chat_form/chat_validation.csv").open(encoding="utf-8")))
    texts = [r["text"] for r in rows]
    got = lid.identify(texts)
    votes: dict[str, dict[int, str]] = {}
    for r, g in zip(rows, got, strict=True):
        votes.setdefault(r["conversation"], {})[int(r["turn"])] = f"{g.language} {g.weight!r}"
    languages = [conversation_language(v) for v in votes.values()]
    routed = sum(lang not in (None, "en") for lang in languages)

    def rate(fn) -> float:
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            fn(texts)
            runs.append(len(texts) / (time.perf_counter() - started))
        return sorted(runs)[len(runs) // 2]

    multilingual = MultilingualModel.load()
    team_texts = [t for _, t in team]
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    multilingual.predict(team_texts[:1])
    first_call_s = time.perf_counter() - started
    added_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024

    def multilingual_rate(batch: int) -> float:
        runs = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            for i in range(0, len(team_texts), batch):
                multilingual.predict(team_texts[i:i + batch])
            runs.append(len(team_texts) / (time.perf_counter() - started))
        return sorted(runs)[len(runs) // 2]

    print(json.dumps({
        "machine": f"{platform.machine()}, {platform.processor() or '?'}",
        "team_turns": accuracy(lid, team), "short_turns": accuracy(lid, short),
        "english_conversations": len(languages), "english_read_as_other": routed,
        "english_read_as_other_share": routed / len(languages),
        "normalise_turns_per_s": rate(lambda ts: [normalise(t) for t in ts]),
        "normalise_and_identify_turns_per_s": rate(lid.identify),
        # the scorer's phrase rules on a turn the model does not flag: imminent phrases, then the strong tier
        "phrase_rules_turns_per_s": rate(phrases.flags),
        "multilingual": {"version": multilingual.version, "first_call_s": first_call_s,
                         "resident_mb_added": added_mb,
                         "turns_per_s": {b: multilingual_rate(b) for b in (1, 8, 32)}},
    }, indent=1))


if __name__ == "__main__":
    main()
