"""Shared pieces of the benchmarks: chat-length messages."""

from __future__ import annotations

import random

import numpy as np

WORDS = " ".join([
    "I have been feeling really tired lately and work keeps piling up so I do not know what to do anymore",
    "my friends are busy and I feel alone most evenings can you help me plan something small for tomorrow",
    "sometimes I think nobody would notice if I was gone and that scares me a little I want to feel better",
]).split()


def chat_messages(n: int, seed: int = 0, min_words: int = 15, max_words: int = 55) -> list[str]:
    """n messages of 15 to 55 words (about 20 to 70 tokens for the MiniLM tokenizer)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(min_words, max_words))) for _ in range(n)]


def logit(p: np.ndarray) -> np.ndarray:
    """Log-odds of probabilities, clipped so that a score of 0 or 1 stays finite."""
    p = np.clip(np.asarray(p, dtype=np.float64), 1e-7, 1 - 1e-7)
    return np.log(p / (1 - p))
