"""Deterministic EAT-schema experience generator shared by bench/, tests/ and the demo.

By default text is drawn at random from a 50-word domain vocabulary; `bench/corpus_text.py` has two
more realistic text styles (natural prose; templated, repetitive agent output) that plug in through
`text=`. Embeddings are unit vectors whose components are float32 values stored as BSON doubles -- what an
embedding API returns after a JSON round trip.
"""
from __future__ import annotations

import datetime as dt
import random
import uuid
from typing import Any, Iterator, Protocol

import numpy as np
from bson import ObjectId

EMBEDDING_FIELDS = (
    "primary_goal_description_embedding",
    "sub_task_description_embedding",
    "input_context_summary_embedding",
    "output_summary_embedding",
)
_WORDS = (
    "invoice customer vendor total amount due date parse extract validate field record schema agent tool "
    "workflow step plan execute retry timeout error success failure partial summary context memory search "
    "library component version evolve generate code review test deploy monitor latency cost token budget "
    "request response payload json pdf document page table line item tax currency euro dollar approval "
    "policy firmware rule governance bus capability register discover route message queue cache index "
    "vector embedding similarity threshold score rank filter sort merge split batch stream window shard "
    "replica primary secondary election lease lock commit rollback audit trail report dashboard metric "
    "anomaly detect classify intent entity sentiment translate summarize answer question user goal "
    "subtask decision reasoning outcome feedback rating improvement lesson pattern heuristic strategy the "
    "a an of to for with from by on in at and or but not is was were be been has have had will would "
    "should could may might must can this that these those it its they their we our you your"
).split()
_COMPONENTS = [f"{kind}_{name}" for kind in ("Agent", "Tool") for name in (
    "InvoiceParser", "DataValidator", "SummaryWriter", "CodeReviewer", "SearchPlanner", "MemoryManager",
    "ContextBuilder", "ExperienceRecorder", "ReportGenerator", "AnomalyDetector")]


class TextStyle(Protocol):
    """Where the free text of a generated document comes from."""

    def sentence(self, rng: random.Random, lo: int, hi: int) -> str:
        """One sentence of about `lo`..`hi` words."""

    def text(self, rng: random.Random, chars: int) -> str:
        """Sentences adding up to at least `chars` characters."""


class RandomWords:
    """Words drawn uniformly from a 50-word vocabulary (the original bench corpus)."""

    def sentence(self, rng: random.Random, lo: int, hi: int) -> str:
        words = rng.choices(_WORDS, k=rng.randint(lo, hi))
        return " ".join(words).capitalize() + "."

    def text(self, rng: random.Random, chars: int) -> str:
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < chars:
            parts.append(self.sentence(rng, 6, 18))
        return " ".join(parts)


def _embedding(rng: np.random.Generator, dims: int) -> list[float]:
    v = rng.standard_normal(dims).astype(np.float32)
    v /= np.linalg.norm(v)
    return v.astype(np.float64).tolist()


def experience(i: int, *, when: dt.datetime, embeddings: bool = True, seed: int = 0,
               dims: int = 1536, text: TextStyle | None = None) -> dict[str, Any]:
    """One experience document as the Evolving Agents Toolkit stores it."""
    rng = random.Random(seed * 1_000_003 + i)
    style = text or RandomWords()
    _text, _sentence = style.text, style.sentence
    doc: dict[str, Any] = {
        "_id": ObjectId(rng.randbytes(12)),
        "experience_id": str(uuid.UUID(bytes=rng.randbytes(16), version=4)),
        "timestamp": when,
        "primary_goal_description": _text(rng, rng.randint(150, 400)),
        "sub_task_description": _text(rng, rng.randint(100, 300)),
        "initiating_agent_id": rng.choice(_COMPONENTS),
        "involved_components": [
            {"component_id": f"comp_{rng.randrange(10_000):04d}", "component_name": name,
             "component_type": name.split("_")[0].upper(), "usage_description": _sentence(rng, 5, 12)}
            for name in rng.sample(_COMPONENTS, rng.randint(1, 4))
        ],
        "input_context_summary": _text(rng, rng.randint(200, 500)),
        "key_decisions_made": [
            {"decision_summary": _sentence(rng, 5, 10), "decision_reasoning": _text(rng, 120),
             "timestamp": when - dt.timedelta(seconds=rng.randint(1, 600))}
            for _ in range(rng.randint(1, 4))
        ],
        "final_outcome": rng.choice(["success", "failure", "partial_success"]),
        "final_outcome_reason": _sentence(rng, 6, 14),
        "output_summary": _text(rng, rng.randint(150, 400)),
        "feedback_signals": [
            {"feedback_source": rng.choice(["user", "evaluator_agent", "system"]),
             "feedback_content": _sentence(rng, 4, 12), "feedback_rating": rng.randint(1, 5)}
            for _ in range(rng.randint(0, 3))
        ],
        "tags": rng.sample(["invoice", "finance", "codegen", "review", "search", "memory", "eval",
                            "production", "staging", "retry"], rng.randint(1, 4)),
        "agent_version": f"1.{rng.randint(0, 9)}.{rng.randint(0, 30)}",
        "token_usage": {"prompt": rng.randint(200, 8000), "completion": rng.randint(50, 2000),
                        "cost_usd": round(rng.random() * 0.2, 6)},
        "duration_ms": rng.randint(120, 90_000),
    }
    if embeddings:
        nrng = np.random.default_rng(seed * 1_000_003 + i)
        doc["embeddings"] = {name: _embedding(nrng, dims) for name in EMBEDDING_FIELDS}
    return doc


def experiences(n: int, *, embeddings: bool = True, seed: int = 0, days: int = 150,
                now: dt.datetime | None = None, text: TextStyle | None = None) -> Iterator[dict[str, Any]]:
    """`n` experiences with timestamps spread evenly over the `days` before `now` (ms precision, UTC)."""
    now = (now or dt.datetime.now(dt.timezone.utc)).replace(microsecond=0)
    step = dt.timedelta(days=days) / max(n, 1)
    for i in range(n):
        yield experience(i, when=now - step * (n - i), embeddings=embeddings, seed=seed, text=text)
