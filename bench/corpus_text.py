"""Realistic text styles for the EAT bench corpus (plug into `bench.corpus.experiences(text=...)`).

Random words from a 50-word vocabulary compress unlike anything an agent writes. Two styles here,
both deterministic and offline:

* `NaturalProse` -- real English prose in which no sentence occurs twice: the ~14,000 distinct prose
  sentences (~1.4 MB) of the docstrings of the Python standard library and of its reference manual
  (`pydoc_data.topics`), which ship with every CPython, drawn in a fixed shuffled order, each once
  (enough for ~500 documents of ~2.6 KB of text). Past that, sentences are spliced from two pool
  sentences at a word they share, and any repeat is redrawn. (A word-level Markov chain over the same
  source was tried first and rejected: 1.2 bits/char under zstd-19 against 2.2 for the real sentences,
  far too easy.) The source differs slightly between Python versions, so the corpus is deterministic
  per Python version.
* `AgentText` -- what LLM agents log: a fixed set of boilerplate sentences, sentence templates and
  whole paragraph templates (plans, tool calls, summaries, a persona preamble) recurring across
  documents (Zipf-distributed, as a model's habits are), their slots filled with identifiers,
  numbers, amounts, dates, paths, vendors and error messages.
"""
from __future__ import annotations

import ast
import bisect
import itertools
import random
import re
import sysconfig
from functools import lru_cache
from pathlib import Path
from typing import Iterator

import pydoc_data.topics

from bench.corpus import RandomWords

def _prose_sentences(text: str) -> Iterator[str]:
    """The sentences of the prose paragraphs of a reStructuredText-like `text` (no code, no tables)."""
    for para in re.split(r"\n\s*\n", text):
        lines = para.splitlines()
        if not lines or any(line.startswith("  ") or not line.strip() for line in lines):
            continue
        flat = " ".join(line.strip() for line in lines)
        if re.search(r"[*=~-]{3,}|>>>|::", flat):
            continue
        for sent in re.split(r"(?<=[.!?])\s+(?=[A-Z])", flat):
            if 6 <= len(sent.split()) <= 60 and sent.endswith((".", "?", "!")):
                yield sent


@lru_cache(maxsize=1)
def _pool() -> tuple[str, ...]:
    """Every distinct prose sentence of the standard library's docstrings and reference manual,
    in a fixed shuffled order."""
    texts = list(pydoc_data.topics.topics.values())
    root = Path(sysconfig.get_paths()["stdlib"])
    for path in sorted(root.rglob("*.py")):
        if {"test", "tests", "idlelib", "site-packages"} & set(path.relative_to(root).parts):
            continue
        try:
            tree = ast.parse(path.read_bytes())
        except (SyntaxError, ValueError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                texts.append(ast.get_docstring(node) or "")
    pool = sorted({s for text in texts for s in _prose_sentences(text)})
    random.Random(20261125).shuffle(pool)
    return tuple(pool)


class NaturalProse:
    """Real English sentences, each used once; past the end of the pool, unique splices of two."""

    def __init__(self) -> None:
        self._next = 0
        self._seen: set[str] = set()

    def sentence(self, rng: random.Random, lo: int, hi: int) -> str:
        pool = _pool()
        while True:
            if self._next < len(pool):
                sent = pool[self._next]
                self._next += 1
            else:  # splice at a word both sentences share: still English, never seen before
                a, b = rng.choice(pool).split(), rng.choice(pool).split()
                common = [(i, j) for i, w in enumerate(a[1:-1], 1) for j, v in enumerate(b[1:-1], 1) if w == v]
                if not common:
                    continue
                i, j = rng.choice(common)
                sent = " ".join(a[:i] + b[j:])
            if sent not in self._seen:
                self._seen.add(sent)
                return sent

    def text(self, rng: random.Random, chars: int) -> str:
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < chars:
            parts.append(self.sentence(rng, 8, 30))
        return " ".join(parts)


_BOILERPLATE = """\
I will start by analyzing the request and identifying the key requirements.
Let me break this task down into smaller, manageable steps.
The task has been completed successfully.
All required fields were extracted and validated against the schema.
No anomalies were detected in the input data.
I need to verify the results before proceeding to the next step.
Based on the analysis above, the most appropriate approach is to reuse the existing component.
The output has been formatted according to the requested structure.
I will now call the tool with the parameters described above.
This approach balances accuracy, latency and cost.
The previous attempt failed, so I will retry with a smaller batch size.
The response from the tool was empty; falling back to the cached result.
I could not find an existing component that matches the requirements, so I will create a new one.
The validation step passed without warnings.
Let me double-check the totals before generating the final report.
The user asked for a concise summary, so I will keep the answer short.
I have enough context to answer the question without another search.
Here is a summary of what was done and why.
The extracted values are consistent with the vendor's previous invoices.
The document appears to be a scanned PDF, so OCR quality may affect the extraction.
Next, I will compare the results with the expected output.
The workflow finished within the allotted token budget.
I will record this experience so that future tasks can benefit from it.
The plan consists of three steps: retrieve, analyze and report.
Some line items could not be matched to purchase orders and were flagged for review.
The similarity search returned several relevant past experiences.
I will use the highest-ranked experience as a starting point.
The code compiles and all unit tests pass.
There are no breaking changes in the public interface.
Please review the flagged items and confirm the corrections.
The request is ambiguous; I will assume the most common interpretation.
Retrying the request after the rate limit reset.
The final answer has been sent to the user.
The agent selected the tool with the best capability match.
This decision was made to minimize the number of external calls.
The context window is close to its limit, so older messages were summarized.
The currency was normalized to EUR using the daily exchange rate.
I am confident in this result because it was cross-checked against two sources.
The evaluator agent rated the output as acceptable.
The component was registered on the smart agent bus.""".splitlines()

_TEMPLATES = """\
Parsed invoice {inv} from {vendor}: {n} line items, total {cur} {amount}, due {date}.
Extracted {n} fields from {file} in {ms} ms.
Validation failed for field '{field}': expected {type}, got '{value}'.
Calling {tool} with query "{query}" (top_k={k}, threshold={thr}).
{tool} returned {n} results in {ms} ms; the best match scored {thr}.
Retry {k} of 3 after {error}.
The total of {cur} {amount} matches the sum of the line items.
The total of {cur} {amount} does not match the sum of the line items ({cur} {amount2}); difference flagged.
Created component {comp} (version {version}) to handle {task}.
Evolved {comp} from version {version} to fix: {error}.
Step {k}: {task}.
Found {n} similar experiences for "{query}"; reusing the approach from {exp}.
Generated {n} unit tests for {func} in {path}; {k} failed.
Fixed {error} in {func} ({path}, line {line}).
Summarized {n} messages ({tokens} tokens) into {k} paragraphs.
The user asked: "{query}"
Vendor {vendor} uses payment terms of {k} days; the due date is {date}.
Routing the request to {agent} because it has the capability '{field}'.
Token usage so far: {tokens} prompt, {k}00 completion, estimated cost ${cost}.
The tax amount {cur} {amount2} corresponds to a rate of {k}%.
Line {line}: {value} x {k} at {cur} {amount2}.
Searching the knowledge base for "{query}".
Loaded {file} ({n} pages).
Error while calling {tool}: {error}.
Updated the schema for {field}: now {type}.
Opened pull request #{line} for {func}: {task}.""".splitlines()

_PARAGRAPHS = (
    'To accomplish this task I will follow these steps: 1. Retrieve the document from the '
    'store and check that it is readable. 2. Extract the header fields and every line item. '
    '3. Validate the totals, the tax amounts and the currency against the purchase order. 4. '
    'Summarize the findings and record the experience for future reuse.',
    'I searched the experience memory for similar tasks before starting. The most relevant '
    'past experience used the {agent} agent together with {tool}, and it completed the task '
    'successfully with a high rating, so I will follow the same approach and only adapt the '
    'parameters that differ.',
    'The extraction is complete. Header: invoice number {inv}, vendor {vendor}, issue date '
    '{date}, currency {cur}. Totals: net {cur} {amount2}, tax {cur} {amount2}, gross {cur} '
    '{amount}. {n} line items were extracted; none of them is missing a description, a '
    'quantity or a unit price.',
    'Tool call: {{"tool": "{tool}", "arguments": {{"query": "{query}", "top_k": {k}, '
    '"threshold": {thr}}}}}. Tool result: {{"status": "ok", "results": {n}, "latency_ms": '
    '{ms}}}.',
    'I reviewed the changes in {path}. The function {func} now handles the edge case where '
    "the input is empty, and the new unit tests cover it. The code follows the project's "
    'style guide, the public interface is unchanged, and I did not find any security issues. '
    'I recommend merging this pull request.',
    'The task could not be completed: {error}. I retried the operation three times with '
    'exponential backoff, but the error persisted. The partial results have been saved, and '
    'the task has been escalated to a human reviewer with a summary of what was attempted.',
    'Summary for the user: the invoice {inv} from {vendor} has been processed. The total '
    'amount of {cur} {amount} is due on {date}. All fields passed validation, and the '
    'invoice has been forwarded for approval according to the finance policy.',
    'I am an AI assistant specialized in processing financial documents. I follow the '
    "company's data protection policy: personal data is only used for the purpose of the "
    'task, and it is never shared with third parties. If a document contains information I '
    'cannot verify, I flag it for human review instead of guessing.',
)

_SLOTS: dict[str, list[str]] = {
    "vendor": ["Acme Corp", "Globex GmbH", "Initech Ltd", "Umbrella Logistics", "Stark Industries",
               "Wayne Enterprises", "Hooli Inc", "Vandelay Imports", "Soylent SA", "Tyrell BV"],
    "cur": ["EUR", "USD", "GBP", "CHF"],
    "field": ["invoice_number", "due_date", "total_amount", "vendor_vat_id", "iban", "line_items",
              "currency", "purchase_order", "billing_address", "tax_rate"],
    "type": ["a date", "a number", "a non-empty string", "an IBAN", "a currency code", "a list"],
    "tool": ["SearchTool", "PDFExtractor", "SchemaValidator", "CurrencyConverter", "CodeRunner",
             "MemoryRetriever", "WebFetcher", "SQLQueryTool"],
    "agent": ["InvoiceParser", "DataValidator", "SummaryWriter", "CodeReviewer", "SearchPlanner"],
    "error": ["a timeout after 30 s", "HTTP 429 Too Many Requests", "a JSON decode error",
              "a missing required field", "an expired access token", "a schema mismatch",
              "a KeyError on 'total'", "a connection reset by peer", "an empty response"],
    "task": ["extract the invoice header", "validate the line items", "convert the currencies",
             "write the summary", "check the VAT numbers", "generate the report",
             "reconcile the payments", "review the pull request", "search for similar cases"],
    "func": ["parse_invoice", "validate_totals", "normalize_currency", "load_document", "rank_results",
             "build_context", "summarize_thread", "extract_tables"],
    "query": ["invoices from Acme Corp with a total above 10,000 EUR", "how to handle scanned PDFs",
              "late payment penalties", "duplicate invoice detection", "VAT reverse charge rules",
              "summarize last week's failures", "components that parse tables"],
}


def _slot(rng: random.Random, name: str) -> str:
    if name in _SLOTS:
        return rng.choice(_SLOTS[name])
    r = rng.randrange
    return {
        "inv": lambda: f"INV-{r(2023, 2027)}-{r(100000):05d}",
        "n": lambda: str(r(1, 60)),
        "k": lambda: str(r(1, 10)),
        "ms": lambda: str(r(40, 9000)),
        "amount": lambda: f"{r(50, 90000):,}.{r(100):02d}",
        "amount2": lambda: f"{r(1, 9000):,}.{r(100):02d}",
        "date": lambda: f"{r(2024, 2027)}-{r(1, 13):02d}-{r(1, 29):02d}",
        "file": lambda: f"invoice_{r(100000):05d}.pdf",
        "value": lambda: rng.choice(["N/A", "", "12/31/2024", "EUR 1.234,50", "null", "TBD", str(r(1000))]),
        "thr": lambda: f"0.{r(50, 99)}",
        "comp": lambda: f"{rng.choice(_SLOTS['agent'])}Agent_v{r(1, 6)}",
        "version": lambda: f"1.{r(10)}.{r(30)}",
        "exp": lambda: f"exp_{r(16 ** 8):08x}",
        "path": lambda: f"src/{rng.choice(['parsers', 'validators', 'agents', 'tools'])}/"
                        f"{rng.choice(_SLOTS['func'])}.py",
        "line": lambda: str(r(1, 900)),
        "tokens": lambda: str(r(500, 60000)),
        "cost": lambda: f"{r(1, 200) / 1000:.3f}",
    }[name]()


class AgentText:
    """Templated, repetitive agent output: boilerplate and slot-filled templates that recur."""

    def __init__(self) -> None:
        pieces = [*_BOILERPLATE, *_TEMPLATES, *_PARAGRAPHS]
        # a model's habits are Zipf-distributed: a few sentences everywhere, most of them rarely
        self._pieces = pieces
        weights = [1 / (rank + 1) ** 0.9 for rank in range(len(pieces))]
        random.Random(1).shuffle(weights)
        self._cumulative = list(itertools.accumulate(weights))

    def sentence(self, rng: random.Random, lo: int, hi: int) -> str:
        piece = self._pieces[bisect.bisect(self._cumulative, rng.random() * self._cumulative[-1])]
        return re.sub(r"\{(\w+)\}", lambda m: _slot(rng, m.group(1)), piece)

    def text(self, rng: random.Random, chars: int) -> str:
        parts: list[str] = []
        while sum(len(p) + 1 for p in parts) < chars:
            parts.append(self.sentence(rng, 0, 0))
        return " ".join(parts)


STYLES = {"words": RandomWords, "prose": NaturalProse, "agent": AgentText}
