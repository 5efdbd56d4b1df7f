import time

import numpy as np
import pytest

from models.backup import MEDIUM_SCORE, STRONG_SCORE, BackupScorer, StrongPhrases
from models.calibration import PlattCalibration
from models.resilient import ResilientScorer
from models.training.thresholds import threshold_for_recall

THRESHOLD = 0.2


@pytest.fixture(scope="module")
def backup():
    return BackupScorer(THRESHOLD)


@pytest.mark.parametrize("text", [
    "I want to die", "i have the pills in my hand", "I'm going to kill myself tonight",
    "I wish I was dead", "thinking about how to end my life", "I cut myself again last night",
    "everyone would be better off without me", "I wrote a suicide note", "kms",
    "I WANT TO DIE", "i don’t want to be alive",
])
def test_backup_flags_explicit_language(backup, text):
    assert backup.predict([text])[0] >= THRESHOLD, backup.matches(text)


@pytest.mark.parametrize("text", ["killed it at work today", "this exam is killing me", "what a lovely day"])
def test_backup_without_a_hit_is_never_treated_as_safe(backup, text):
    score = backup.predict([text])[0]
    # below the threshold but inside the borderline band, so the conversation is sampled at a raised rate
    assert score == THRESHOLD / 2


def test_backup_tiers(backup):
    scores = backup.predict(["I want to die", "I feel hopeless", "hello"])
    assert list(scores) == [STRONG_SCORE, MEDIUM_SCORE, THRESHOLD / 2]


class Exploding:
    threshold = THRESHOLD
    model_version = "boom"

    def predict(self, texts):
        raise RuntimeError("CUDA out of memory")


class Slow:
    threshold = THRESHOLD
    model_version = "slow"

    def predict(self, texts):
        import time

        time.sleep(2)
        return np.zeros(len(texts))


class Good:
    threshold = THRESHOLD
    model_version = "good"

    def predict(self, texts):
        return np.full(len(texts), 0.01)


def test_backup_is_used_when_the_model_raises():
    r = ResilientScorer(Exploding(), THRESHOLD)
    batch = r.score(["I want to die", "hello"])
    assert batch.backup and batch.model_version == BackupScorer.model_version
    assert batch.scores[0] >= THRESHOLD and "RuntimeError" in batch.error
    r.close()


def test_backup_is_used_when_the_model_times_out():
    r = ResilientScorer(Slow(), THRESHOLD, timeout_s=0.2)
    assert r.score(["I have the pills in my hand"]).backup
    assert r.score(["hello"]).backup  # still busy with the stuck batch
    r.close()


def test_model_scores_pass_through_when_healthy():
    r = ResilientScorer(Good(), THRESHOLD)
    batch = r.score(["a", "b"])
    assert not batch.backup and list(batch.scores) == [0.01, 0.01] and batch.model_version == "good"
    r.close()


def test_calibration_is_monotonic_and_threshold_meets_the_recall_target():
    rng = np.random.default_rng(0)
    labels = rng.random(2000) < 0.1
    logits = rng.normal(0, 1, 2000) + 2.5 * labels
    cal = PlattCalibration.fit(logits, labels)
    grid = np.linspace(-10, 10, 1001)
    probs = cal(grid)
    assert cal.a > 0 and np.all(np.diff(probs) >= 0)
    scores = cal(logits)
    t = threshold_for_recall(scores, labels, 0.97)
    assert np.mean(scores[labels] >= t) >= 0.97
    # just under the deciding crisis score: above that score, recall drops below the target
    deciding = np.sort(scores[labels])[::-1][int(np.ceil(0.97 * labels.sum())) - 1]
    assert t < deciding
    assert np.mean(scores[labels] >= np.nextafter(deciding, 1)) < 0.97
    # rounding noise of the scores (another batch's padding, fp16 weights) cannot flip the deciding example
    noisy = scores * (1 - 1e-5)
    assert np.mean(noisy[labels] >= t) >= 0.97


def test_submitted_scores_arrive_while_the_caller_does_other_work():
    class Counting(Good):
        def predict(self, texts):
            time.sleep(0.1)
            return np.full(len(texts), 0.02)

    r = ResilientScorer(Counting(), THRESHOLD, timeout_s=5.0)
    pending = r.submit(["a", "b", "c"])
    time.sleep(0.15)  # the caller finishes the previous batch meanwhile
    batch = pending.result()
    assert not batch.backup and list(batch.scores) == [0.02, 0.02, 0.02]
    r.close()


def test_a_submitted_batch_times_out_from_its_submission():
    r = ResilientScorer(Slow(), THRESHOLD, timeout_s=0.2)
    pending = r.submit(["I have the pills in my hand"])
    time.sleep(0.3)
    started = time.monotonic()
    batch = pending.result()
    assert batch.backup and "timed out" in batch.error and batch.scores[0] >= THRESHOLD
    assert time.monotonic() - started < 0.2  # the timeout had already run out: no second wait
    r.close()


def test_inference_workers_follow_a_containers_cpu_quota(tmp_path):
    import os

    from models.backends import available_cpus

    affinity = len(os.sched_getaffinity(0))
    quota = tmp_path / "cpu.max"
    quota.write_text("150000 100000\n")  # `cpus: 1.5`
    assert available_cpus(quota) == min(affinity, 2)
    quota.write_text("max 100000\n")
    assert available_cpus(quota) == affinity
    assert available_cpus(tmp_path / "missing") == affinity


@pytest.mark.parametrize("text", ["I have the pills in my hand", "this is goodbye, everyone", "gonna end it tonight",
                                  "I'm standing on the bridge right now", "I Took All My Pills"])
def test_imminent_phrases_make_a_turn_urgent(text):
    from models.backup import ImminentPhrases

    assert ImminentPhrases().search(text)


@pytest.mark.parametrize("text", ["I killed it at the gym tonight", "goodbye for now, see you tomorrow",
                                  "I have the pills my doctor prescribed for my back", "we walked over the bridge"])
def test_ordinary_turns_hold_no_imminent_phrase(text):
    from models.backup import ImminentPhrases

    assert not ImminentPhrases().search(text)


@pytest.fixture(scope="module")
def strong():
    return StrongPhrases()


@pytest.mark.parametrize("text", [
    "Wednesday 9 October I have bought everything I need to hang myself in the classroom.",  # a model's 0.01 (31)
    "I'm going to kill myself tonight", "i w\u200bant to kill my\u200bself",  # read through zero-width characters
    "ｉ ｗａｎｔ ｔｏ ｄｉｅ", "quiero suicidarme",  # full-width letters; another supported language's strong phrase
])
def test_strong_phrases_are_the_strong_tier_read_as_the_backup_reads_it(strong, backup, text):
    assert strong.search(text), text
    assert backup.predict([text])[0] == STRONG_SCORE


@pytest.mark.parametrize("text", [
    "this exam is killing me", "Who's cutting onions?!", "Shotgun! But do I get to play with all the buttons too?",
    "Humanity is doomed", "I feel hopeless",  # the medium tier's single words flag ordinary chat: not strong
])
def test_strong_phrases_leave_the_medium_tier_and_idioms_alone(strong, text):
    assert not strong.search(text)


@pytest.mark.parametrize("text", [
    "i might just commit sewerslide", "honestly thinking about sewer slide again",  # the live model: 0.019, 0.000
    "thinking about self unaliving", "relapsed on sh last night", "sh urges are bad today",  # 0.007, 0.001, 0.002
    "i keep wanting to ctb", "i should just kill my self",
])
def test_community_terms_for_suicide_and_self_harm_are_strong_phrases(strong, backup, text):
    assert strong.search(text), text
    assert backup.predict([text])[0] == STRONG_SCORE


@pytest.mark.parametrize("text", [
    "catch the bus at 5 to get to work", "sh is the chemical symbol hint for my quiz", "it's killing my self-esteem",
    "that movie scene where he gets unalived was wild", "my son has been self-harming, how do I talk to him",
])
def test_community_terms_need_the_first_person_use(strong, text):
    assert not strong.search(text)


def test_training_data_are_selected_with_the_lexicon_they_were_built_with(backup):
    from models.backup import TRAINING_DATA_FILES

    text = "honestly thinking about sewer slide again"  # a community word, added to the strong tier later
    assert backup.predict([text])[0] == STRONG_SCORE
    assert BackupScorer(THRESHOLD, files=TRAINING_DATA_FILES).predict([text])[0] < STRONG_SCORE
    assert BackupScorer(THRESHOLD, files=TRAINING_DATA_FILES).predict(["I want to kill myself"])[0] == STRONG_SCORE


@pytest.mark.parametrize(("text", "sign"), [
    ("I’ve been giving away my records to friends", "giving things away"),
    ("wrote letters for my kids, just in case", "goodbye"),
    ("I feel WEIRDLY CALM NOW that it's decided", "calm after deciding"),
    ("i wear long sle\u200beves so nobody asks", "hiding self-harm"),  # read after the normaliser
    ("who will feed the cat once i'm gone", "not being here"),
    ("been stockpiling my meds", "means"),
])
def test_warning_signs_are_found_as_the_lexicon_reads_text(text, sign):
    from models.backup import WarningSigns

    assert WarningSigns().find(text) == sign


@pytest.mark.parametrize("text", ["giving my away team a pep talk", "i'm gone for the weekend, back monday",
                                  "is it too calm to go sailing", "my sleeves are too long"])
def test_ordinary_turns_near_a_warning_sign_hold_none(text):
    from models.backup import WarningSigns

    assert WarningSigns().find(text) is None


def test_warning_signs_hold_few_ordinary_conversations_of_the_chat_form_sets():
    """Every conversation holding one is reviewed (`pi_warning_sign` 1.0): the phrases must stay rare in ordinary chat
    (0.04% of validation's and none of test's ordinary conversations, one small-talk conversation in 600, when
    written); a phrase that floods ordinary chat fails this before it floods the clinicians."""
    import csv
    from collections import defaultdict
    from pathlib import Path

    from models.backup import LEXICON_DIR, WarningSigns

    signs = WarningSigns()
    with open(LEXICON_DIR / "warning_signs" / "warning_signs.csv", newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["sign"] for r in rows} == {"giving things away", "goodbye", "affairs in order", "not being here",
                                         "calm after deciding", "hiding self-harm", "means", "research", "burden"}
    folder = Path(__file__).resolve().parents[2] / "data" / "chat_form"
    ordinary, held = 0, 0
    for name in ("chat_validation.csv", "chat_test.csv", "chitchat_test.csv", "therapy_long_test.csv"):
        conversations: dict[str, list[dict[str, str]]] = defaultdict(list)
        with open(folder / name, newline="", encoding="utf-8") as fh:
            for r in csv.DictReader(fh):
                conversations[r.get("conversation") or r["id"]].append(r)
        for turns in conversations.values():
            if all(t["label"] == "no_crisis" for t in turns):
                ordinary += 1
                held += any(signs.find(t["text"]) for t in turns)
    assert ordinary > 6000 and held / ordinary <= 0.002, (held, ordinary)
