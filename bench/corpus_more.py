"""More EAT-shaped corpora, built independently of bench/corpus.py and bench/corpus_text.py, to play
the independent checker of issue #12 (bench/bench_corpora.py measures them).

Text sources, all offline and deterministic on one machine:

* `man` -- real English prose: the prose paragraphs of the English manual pages in /usr/share/man
  (sections 1, 5, 7, 8), rendered with groff, pages in a fixed shuffled order, paragraphs in their
  own order (an agent writes about one topic for a while), no paragraph used twice.
* `intl` -- the same from the Japanese, Chinese, Russian, Ukrainian, Korean, German and French
  manual pages: UTF-8 multibyte prose, one language per document.
* `llm` -- LLM agent output: OpenAI-style tool-call JSON (arguments as an escaped JSON string),
  tool results as JSON records, Python tracebacks, real code from the installed packages in
  fenced blocks, markdown tables of figures, numbered plans, ReAct Thought/Action/Observation
  turns, from ~40 templates recurring across documents with Zipf weights, their slots filled.
* `logs` -- log excerpts in four formats (JSON lines, Python logging, access log, key=value),
  timestamps rising within a document, request and trace UUIDs recurring within it.
* `short` -- 200-500 bytes of text per document (all text fields together), mixed styles.
* `long` -- 10-50 KB of text per document: a long transcript of prose, agent output and logs.

Embedding variants (`EMBEDDINGS`): float32 unit vectors (4 x 1536, as the issue states); float32
not normalised, anisotropic (per-dimension bias shared across documents, a few outlier
dimensions); float64 unit vectors (not float32-exact); float32 values printed as shortest decimals
and parsed back as doubles (JSON from a float32 serialiser read by Python: mostly not
float32-exact); 3 x 768 float32.

The man pages differ between machines: the corpus is deterministic per machine, and
`fingerprint()` names it.
"""
from __future__ import annotations

import ast
import datetime as dt
import hashlib
import json
import random
import re
import string
import subprocess
import sysconfig
import tempfile
import uuid
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import numpy as np
from bson import ObjectId

MAN = Path("/usr/share/man")
CACHE = Path(tempfile.gettempdir()) / "archiverd-corpus-more"
INTL = ("ja", "zh_CN", "ru", "uk", "ko", "de", "fr")
EN_PAGES = 8000  # English pages rendered (about 4 MB of prose)


# --- prose from the manual pages -----------------------------------------------------------------

def _render(page: Path) -> str:
    """One manual page as plain UTF-8 text, one line per paragraph (no wrapping, no hyphenation)."""
    src = subprocess.run(["zcat", "-f", str(page)], capture_output=True, check=False).stdout
    out = subprocess.run(["groff", "-k", "-man", "-Tutf8", "-rLL=3000n", "-rHY=0", "-P-cbou"],
                         input=src, capture_output=True, check=False).stdout
    return out.decode("utf-8", "replace")


def _prose(rendered: str, min_chars: int) -> list[str]:
    """The prose paragraphs of a rendered page: body lines (7-space indent) long enough, ending a
    sentence, not option lists or code."""
    out = []
    for line in rendered.splitlines():
        if not line.startswith("       ") or line.startswith("        "):
            continue
        para = re.sub(r"\s{2,}", " ", line.strip())
        if len(para) < min_chars or "\ufffd" in para or not para.endswith((".", "。", ":", ")", "»")):
            continue
        out.append(para)
    return out


@lru_cache(maxsize=None)
def paragraphs(lang: str) -> tuple[str, ...]:
    """Distinct prose paragraphs of the manual pages of `lang` ("en" or one of INTL), pages in a
    fixed shuffled order; cached in CACHE (rendering 4000 pages takes a minute or two)."""
    if lang == "en":
        pages = sorted(p for s in ("man1", "man5", "man7", "man8") for p in (MAN / s).glob("*"))
        random.Random(1).shuffle(pages)
        pages = pages[:EN_PAGES]
    else:
        pages = sorted((MAN / lang).glob("man*/*"))
        random.Random(1).shuffle(pages)
    key = hashlib.sha256("\n".join(f"{p}:{p.stat().st_size}" for p in pages).encode()).hexdigest()[:16]
    cached = CACHE / f"{lang}-{key}.json"
    if cached.exists():
        return tuple(json.loads(cached.read_text("utf-8")))
    seen: set[str] = set()
    out = []
    for page in pages:
        for para in _prose(_render(page), 80 if lang in ("en", "de", "fr", "ru", "uk") else 40):
            if para not in seen:
                seen.add(para)
                out.append(para)
    CACHE.mkdir(exist_ok=True)
    cached.write_text(json.dumps(out, ensure_ascii=False), "utf-8")
    return tuple(out)


class Prose:
    """A reader that hands out the prose of one language in order, each paragraph once (cycling
    only if a corpus asks for more than there is)."""

    _STOPS = re.compile(r"(?<=[.!?。])\s+|(?<=。)")

    def __init__(self, lang: str) -> None:
        self.paras = paragraphs(lang)
        self.next = 0
        self.rest = ""

    def text(self, chars: int) -> str:
        """About `chars` characters: whole sentences, continuing where the last call stopped."""
        out = ""
        while len(out) < chars:
            if not self.rest:
                self.rest = self.paras[self.next % len(self.paras)]
                self.next += 1
                if out:
                    out += "\n\n"
            parts = self._STOPS.split(self.rest, maxsplit=1)
            sent, self.rest = parts[0], (parts[1] if len(parts) > 1 else "")
            out += ("" if not out or out.endswith("\n\n") else " ") + sent
        return out


# --- LLM agent output ----------------------------------------------------------------------------

_TOOLS = ("search_web", "read_file", "run_sql", "http_get", "python_exec", "list_directory", "send_email",
          "vector_search", "create_ticket", "get_invoice")
_VENDORS = ("Acme Logistics GmbH", "Northwind Traders", "Globex Corporation", "Initech LLC", "Umbrella Supply Co.",
            "Stark Industrial", "Wayne Freight", "Hooli Cloud Services", "Soylent Foods AG", "Vandelay Imports")
_MODULES = ("requests/adapters.py", "httpx/_client.py", "pydantic/main.py", "sqlalchemy/engine/base.py",
            "pymongo/collection.py", "openai/_base_client.py", "langchain/agents/agent.py", "app/tools/invoice.py",
            "app/agent/executor.py", "app/memory/store.py", "json/decoder.py", "asyncio/tasks.py")
_ERRORS = (("KeyError", "'{field}'"), ("ValueError", "could not convert string to float: '{value}'"),
           ("TimeoutError", "request to {url} timed out after {s} seconds"),
           ("ConnectionError", "HTTPSConnectionPool(host='{host}', port=443): Max retries exceeded with url: {path}"),
           ("json.decoder.JSONDecodeError", "Expecting ',' delimiter: line {n} column {k} (char {c})"),
           ("pydantic.ValidationError", "1 validation error for Invoice\n{field}\n  field required (type=value_error.missing)"),
           ("openai.RateLimitError", "Error code: 429 - {{'error': {{'message': 'Rate limit reached for gpt-4o in organization org-{org} on tokens per min (TPM): Limit 30000, Used {n}, Requested {k}.', 'type': 'tokens', 'code': 'rate_limit_exceeded'}}}}"),
           ("sqlalchemy.exc.OperationalError", "(psycopg2.OperationalError) could not connect to server: Connection refused"))
_FIELDS = ("invoice_number", "due_date", "total_amount", "vendor_vat_id", "currency", "line_items", "po_number",
           "customer_id", "billing_address", "tax_rate")
_PLAN_STEPS = ("Retrieve the {what} for {vendor} from the {source}.", "Validate every field against the {schema} schema.",
               "Cross-check the totals with the purchase order {po}.", "Search memory for similar past experiences.",
               "Call `{tool}` with the extracted parameters.", "Summarise the findings in a table for the user.",
               "Flag any discrepancy above {cur} {amount} for human review.", "Write unit tests for `{func}`.",
               "Refactor `{func}` to handle the `{field}` edge case.", "Deploy version {version} to staging and monitor errors for {n} minutes.",
               "Re-run the failing step with a smaller batch size ({n} items).", "Ask the user to confirm the {field} before proceeding.")
_THOUGHTS = ("I need to find the {what} before I can answer.", "The previous call failed with {err}; I will retry with backoff.",
             "The result looks incomplete: only {n} of {k} records were returned.", "I have enough information to write the final answer.",
             "The user wants the totals per vendor, so I will aggregate with SQL.", "This looks like a duplicate of invoice {inv}.",
             "The schema requires `{field}`, which is missing; I will infer it from the PDF text.",
             "Let me check the logs around {ts} for the root cause.")
_HEADERS = (("Vendor", "Invoices", "Total ({cur})", "Overdue"), ("Step", "Tool", "Latency (ms)", "Status"),
            ("Metric", "Before", "After", "Change"), ("File", "Lines", "Coverage", "Issues"))


def _words(rng: random.Random, n: int) -> str:
    return rng.choice(("", "the ", "all ", "open ", "latest ")) + " ".join(
        rng.choice(("invoice", "vendor", "payment", "report", "schema", "record", "line item", "contract",
                    "shipment", "ticket", "error rate", "latency", "budget", "approval", "deployment"))
        for _ in range(n))


@lru_cache(maxsize=1)
def _code_pool() -> tuple[str, ...]:
    """Source of real functions (5-40 lines) from a few installed packages, in a fixed order."""
    root = Path(sysconfig.get_paths()["purelib"])
    out = []
    for pkg in ("click", "bson", "pymongo", "dateutil", "yaml", "zstandard", "attr", "anyio", "certifi"):
        for path in sorted((root / pkg).rglob("*.py")):
            try:
                src = path.read_text("utf-8")
                tree = ast.parse(src)
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            lines = src.splitlines()
            for node in ast.walk(tree):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno:
                    body = lines[node.lineno - 1:node.end_lineno]
                    if 5 <= len(body) <= 40:
                        indent = len(body[0]) - len(body[0].lstrip())
                        out.append("\n".join(line[indent:] for line in body))
    random.Random(2).shuffle(out)
    return tuple(out)


class Agent:
    """LLM agent output from recurring templates (Zipf-weighted) with filled slots."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.code = 0
        kinds = [self.tool_call, self.tool_result, self.traceback, self.code_block, self.table, self.plan,
                 self.react, self.summary]
        self.kinds = kinds
        self.weights = [1 / (k + 1) ** 0.7 for k in range(len(kinds))]

    def _slots(self) -> dict[str, Any]:
        r = self.rng
        return {"vendor": r.choice(_VENDORS), "inv": f"INV-{r.randint(2024, 2026)}-{r.randrange(100000):05d}",
                "po": f"PO-{r.randrange(10**6):06d}", "cur": r.choice(("EUR", "USD", "GBP")),
                "amount": f"{r.uniform(10, 25000):,.2f}", "n": r.randint(2, 400), "k": r.randint(1, 50),
                "c": r.randint(10, 9000), "s": r.choice((10, 30, 60, 120)), "field": r.choice(_FIELDS),
                "value": r.choice(("N/A", "", "12,50", "—", "1.234,56", "TBD")), "tool": r.choice(_TOOLS),
                "what": _words(r, r.randint(1, 2)), "source": r.choice(("ERP", "S3 bucket", "mailbox", "vector store")),
                "schema": r.choice(("InvoiceV2", "PurchaseOrder", "VendorRecord")), "version": f"{r.randint(1, 4)}.{r.randint(0, 20)}.{r.randint(0, 9)}",
                "func": r.choice(("parse_invoice", "normalize_currency", "match_po", "extract_tables", "retry_with_backoff", "build_prompt")),
                "host": f"api.{r.choice(('vendor', 'billing', 'erp', 'ocr'))}-{r.randint(1, 40)}.example.com",
                "url": f"https://api.example.com/v{r.randint(1, 3)}/{r.choice(('invoices', 'vendors', 'payments'))}/{r.randrange(10**6)}",
                "path": f"/v2/{r.choice(('invoices', 'search', 'documents'))}?page={r.randint(1, 90)}&limit={r.choice((50, 100, 500))}",
                "org": "".join(r.choices(string.ascii_letters + string.digits, k=24)),
                "ts": f"2026-{r.randint(1, 11):02d}-{r.randint(1, 28):02d}T{r.randint(0, 23):02d}:{r.randint(0, 59):02d}:{r.randint(0, 59):02d}Z",
                "err": r.choice(_ERRORS)[0]}

    def tool_call(self) -> str:
        r, s = self.rng, self._slots()
        args = {"search_web": {"query": f"{s['vendor']} {s['what']} {s['field']}", "num_results": s["k"]},
                "read_file": {"path": f"/data/inbox/{s['inv']}.pdf", "pages": [1, r.randint(2, 9)]},
                "run_sql": {"query": f"SELECT vendor_id, SUM(total) AS total FROM invoices WHERE due_date < '{s['ts'][:10]}' "
                                     f"AND currency = '{s['cur']}' GROUP BY vendor_id ORDER BY total DESC LIMIT {s['k']}"},
                "http_get": {"url": s["url"], "headers": {"Accept": "application/json"}, "timeout": s["s"]},
                "python_exec": {"code": self._code()[:400]},
                "list_directory": {"path": f"/srv/{s['source'].replace(' ', '_')}/{s['ts'][:7]}"},
                "send_email": {"to": f"ap-team+{r.randrange(100)}@example.com", "subject": f"Invoice {s['inv']} needs review",
                               "body": f"Hi,\n\nInvoice {s['inv']} from {s['vendor']} totals {s['cur']} {s['amount']} "
                                       f"but the PO {s['po']} says otherwise. Please check.\n\nThanks"},
                "vector_search": {"collection": "experiences", "query_text": f"{s['what']} for {s['vendor']}", "top_k": s["k"],
                                  "min_score": round(r.uniform(0.5, 0.9), 2)},
                "create_ticket": {"project": "AP", "title": f"{s['err']} in {s['func']}", "priority": r.choice(("P1", "P2", "P3"))},
                "get_invoice": {"invoice_id": s["inv"], "include_lines": True}}[s["tool"]]
        call = {"id": "call_" + "".join(r.choices(string.ascii_letters + string.digits, k=24)), "type": "function",
                "function": {"name": s["tool"], "arguments": json.dumps(args)}}
        return json.dumps({"role": "assistant", "content": None, "tool_calls": [call]}, indent=r.choice((None, 2)))

    def tool_result(self) -> str:
        r, s = self.rng, self._slots()
        rows = [{"invoice_id": f"INV-{r.randint(2024, 2026)}-{r.randrange(100000):05d}", "vendor": r.choice(_VENDORS),
                 "total": round(r.uniform(10, 25000), 2), "currency": s["cur"],
                 "due_date": f"2026-{r.randint(1, 12):02d}-{r.randint(1, 28):02d}",
                 "status": r.choice(("open", "paid", "overdue", "disputed"))} for _ in range(r.randint(1, 6))]
        return json.dumps({"status": r.choice((200, 200, 200, 404, 500)), "elapsed_ms": r.randint(5, 4000),
                           "data": rows, "next_page": r.choice((None, s["path"]))}, indent=r.choice((None, 2)))

    def traceback(self) -> str:
        r, s = self.rng, self._slots()
        frames = r.sample(_MODULES, r.randint(2, 6))
        lines = ["Traceback (most recent call last):"]
        for mod in frames:
            lines.append(f'  File "/opt/agent/.venv/lib/python3.11/site-packages/{mod}", line {r.randint(12, 2400)}, '
                         f"in {r.choice(('send', 'request', '_call', 'invoke', 'run', 'validate', 'execute', 'decode'))}")
            lines.append("    " + r.choice(("return self._send(request, auth=auth)", "raise exc", "obj = self.scan_once(s, idx)",
                                            "response = await self._client.post(url, json=payload)",
                                            "result = tool.run(**arguments)", "self._validate(data)")))
        name, msg = r.choice(_ERRORS)
        lines.append(f"{name}: {msg.format(**s)}")
        return "\n".join(lines)

    def _code(self) -> str:
        pool = _code_pool()
        self.code += 1
        return pool[(self.code * 7919 + self.rng.randrange(len(pool))) % len(pool)]

    def code_block(self) -> str:
        s = self._slots()
        return f"Here is the updated `{s['func']}`:\n\n```python\n{self._code()}\n```"

    def table(self) -> str:
        r, s = self.rng, self._slots()
        head = r.choice(_HEADERS)
        rows = ["| " + " | ".join(h.format(**s) for h in head) + " |", "|" + "---|" * len(head)]
        for _ in range(r.randint(2, 8)):
            rows.append("| " + " | ".join((r.choice(_VENDORS), str(r.randint(1, 90)), f"{r.uniform(10, 99999):,.2f}",
                                           f"{r.randint(0, 100)}%")[:len(head)]) + " |")
        return "\n".join(rows)

    def plan(self) -> str:
        r, s = self.rng, self._slots()
        steps = r.sample(_PLAN_STEPS, r.randint(3, 7))
        return "Plan:\n" + "\n".join(f"{n}. {step.format(**s)}" for n, step in enumerate(steps, 1))

    def react(self) -> str:
        r, s = self.rng, self._slots()
        return (f"Thought: {r.choice(_THOUGHTS).format(**s)}\nAction: {s['tool']}\n"
                f"Action Input: {json.dumps({'query': s['what'], 'vendor': s['vendor']})}\n"
                f"Observation: {r.choice(('Found', 'Returned', 'Got'))} {s['n']} results in {r.randint(5, 3000)} ms.")

    def summary(self) -> str:
        r, s = self.rng, self._slots()
        return r.choice((
            "I processed invoice {inv} from {vendor}. The total is {cur} {amount}, which matches PO {po}. No further action is needed.",
            "**Summary**\n\n- Invoices checked: {n}\n- Discrepancies: {k}\n- Largest: {cur} {amount} ({vendor})\n\nNext: {what}.",
            "The `{func}` step failed with {err} after {k} retries; I escalated it as a ticket and continued with the remaining {n} items.",
            "Done. I updated `{func}` (version {version}) so that a missing `{field}` no longer stops the run.",
        )).format(**s)

    def block(self) -> str:
        return self.rng.choices(self.kinds, self.weights)[0]()

    def text(self, chars: int) -> str:
        out: list[str] = []
        while sum(len(p) + 2 for p in out) < chars:
            out.append(self.block())
        return "\n\n".join(out)


# --- logs ----------------------------------------------------------------------------------------

class Logs:
    """Log excerpts: a clock that only goes forward, ids that recur within a document."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.clock = dt.datetime(2026, 6, 1, tzinfo=dt.timezone.utc)

    def text(self, chars: int) -> str:
        r = self.rng
        fmt = r.choice((0, 0, 1, 1, 2, 3))
        trace = str(uuid.UUID(bytes=r.randbytes(16), version=4))
        requests = [str(uuid.UUID(bytes=r.randbytes(16), version=4)) for _ in range(r.randint(1, 4))]
        worker = r.randint(0, 15)
        lines: list[str] = []
        while sum(len(x) + 1 for x in lines) < chars:
            self.clock += dt.timedelta(microseconds=r.randint(200, 4_000_000))
            level = r.choices(("DEBUG", "INFO", "WARNING", "ERROR"), (3, 10, 2, 1))[0]
            req = r.choice(requests)
            ms = round(r.expovariate(1 / 80), 1)
            msg = r.choice((f"tool {r.choice(_TOOLS)} finished", f"retrying request (attempt {r.randint(1, 5)})",
                            f"cache {'hit' if r.random() < 0.6 else 'miss'} for key emb:{r.randrange(16**8):08x}",
                            f"parsed {r.randint(1, 400)} line items", "rate limit reached, sleeping",
                            f"tokens prompt={r.randint(200, 9000)} completion={r.randint(10, 2000)}",
                            f"wrote experience {uuid.UUID(bytes=r.randbytes(16), version=4)}"))
            ts = self.clock.isoformat(timespec="microseconds").replace("+00:00", "Z")
            if fmt == 0:
                lines.append(json.dumps({"ts": ts, "level": level, "logger": f"agent.{r.choice(('executor', 'tools', 'memory', 'llm'))}",
                                         "msg": msg, "trace_id": trace, "request_id": req, "latency_ms": ms, "worker": worker}))
            elif fmt == 1:
                lines.append(f"{self.clock:%Y-%m-%d %H:%M:%S},{self.clock.microsecond // 1000:03d} {level:<7} "
                             f"[agent.{r.choice(('executor', 'tools', 'http'))}:{r.randint(20, 900)}] {msg} (request {req}, {ms} ms)")
            elif fmt == 2:
                lines.append(f'10.{r.randint(0, 255)}.{r.randint(0, 255)}.{r.randint(1, 254)} - - [{self.clock:%d/%b/%Y:%H:%M:%S +0000}] '
                             f'"{r.choice(("GET", "POST"))} {r.choice(("/v1/chat/completions", "/v1/embeddings", "/api/invoices", "/healthz"))} HTTP/1.1" '
                             f'{r.choices((200, 201, 429, 500), (20, 3, 2, 1))[0]} {r.randint(80, 90000)} "-" "python-httpx/0.27.{r.randint(0, 2)}" {ms / 1000:.3f}')
            else:
                lines.append(f"time={ts} level={level.lower()} worker={worker} trace={trace} req={req} "
                             f"msg=\"{msg}\" dur={ms}ms bytes={r.randint(0, 65536)}")
        return "\n".join(lines)


# --- documents -----------------------------------------------------------------------------------

_AGENTS = ("planner", "invoice-extractor", "code-reviewer", "ops-triage", "research-assistant", "sql-analyst")
_MODELS = ("gpt-4o-2024-08-06", "claude-3-5-sonnet-20241022", "gpt-4o-mini", "llama-3.1-70b-instruct")
FIELDS4 = ("primary_goal_description_embedding", "sub_task_description_embedding",
           "input_context_summary_embedding", "output_summary_embedding")


def _f32_unit(rng: np.random.Generator, dims: int, bias: np.ndarray | None) -> list[float]:
    v = rng.standard_normal(dims).astype(np.float32)
    return (v / np.linalg.norm(v)).astype(np.float64).tolist()


def _f32_raw(rng: np.random.Generator, dims: int, bias: np.ndarray | None) -> list[float]:
    """Unnormalised, anisotropic (as a sentence encoder without normalisation): shared
    per-dimension bias, a few outlier dimensions, norm around 8."""
    assert bias is not None
    v = (bias + rng.standard_normal(dims) * 0.2).astype(np.float32)
    return v.astype(np.float64).tolist()


def _f64_unit(rng: np.random.Generator, dims: int, bias: np.ndarray | None) -> list[float]:
    v = rng.standard_normal(dims)
    return (v / np.linalg.norm(v)).tolist()


def _f32_decimal(rng: np.random.Generator, dims: int, bias: np.ndarray | None) -> list[float]:
    """float32 values printed as their shortest decimal (what a float32 JSON serialiser writes) and
    parsed back as doubles."""
    v = rng.standard_normal(dims).astype(np.float32)
    v /= np.linalg.norm(v)
    return [float(np.format_float_positional(x, unique=True, trim="-")) for x in v]


# name -> (fields, dims, maker)
EMBEDDINGS: dict[str, tuple[tuple[str, ...], int, Callable]] = {
    "f32": (FIELDS4, 1536, _f32_unit),
    "f32raw": (FIELDS4, 1536, _f32_raw),
    "f64": (FIELDS4, 1536, _f64_unit),
    "f32dec": (FIELDS4, 1536, _f32_decimal),
    "3x768": (FIELDS4[:3], 768, _f32_unit),
}


def _bias(dims: int) -> np.ndarray:
    b = np.random.default_rng(99).standard_normal(dims) * 0.15
    b[np.random.default_rng(98).choice(dims, 8, replace=False)] = 4.0
    return b


def _uid(r: random.Random) -> str:
    return str(uuid.UUID(bytes=r.randbytes(16), version=4))


def corpus(style: str, n: int = 300, *, embeddings: str | None = None, seed: int = 7) -> list[dict[str, Any]]:
    """`n` EAT experience documents whose text is `style` (man, intl, llm, logs, short, long),
    with the embedding variant `embeddings` (a key of EMBEDDINGS) or none."""
    r = random.Random(seed)
    man = Prose("en")
    intl = {lang: Prose(lang) for lang in INTL} if style == "intl" else {}
    weights = [sum(map(len, p.paras)) for p in intl.values()]  # languages in proportion to their prose
    agent, logs = Agent(seed), Logs(seed)
    nrng = np.random.default_rng(seed)
    fields, dims, make = EMBEDDINGS[embeddings] if embeddings else ((), 0, None)
    bias = _bias(dims) if embeddings else None
    start = dt.datetime(2026, 7, 1, tzinfo=dt.timezone.utc)
    docs = []
    for i in range(n):
        when = start + dt.timedelta(seconds=i * 431 + r.randint(0, 400), milliseconds=r.randint(0, 999))
        lang = r.choices(INTL, weights)[0] if intl else "en"

        def text(chars: int, kind: str = "prose") -> str:
            """Text of about `chars` characters; `kind` "detail" for a context, output or reasoning."""
            if style == "intl":
                return intl[lang].text(chars)
            if style == "man":
                return man.text(chars)
            if kind == "prose":
                return agent.summary()
            if style in ("llm", "logs"):
                return agent.text(chars) if style == "llm" else logs.text(chars)
            raise ValueError(f"unknown corpus style {style!r}")

        if style == "short":
            sizes = {"goal": r.randint(60, 160), "sub": r.randint(30, 80), "input": r.randint(40, 120),
                     "output": r.randint(40, 120)}
            goal = man.text(sizes["goal"])
            docs.append(_doc(r, when, goal, man.text(sizes["sub"]), agent.summary()[:sizes["input"]],
                             agent.summary()[:sizes["output"]], [], nrng, fields, dims, make, bias, lang))
            continue
        if style == "long":
            parts, total = [], r.randint(10_000, 50_000)
            while sum(map(len, parts)) < total:
                parts.append(r.choice((lambda: man.text(r.randint(800, 4000)), lambda: agent.text(r.randint(500, 3000)),
                                       lambda: logs.text(r.randint(500, 3000))))())
            output = "\n\n".join(parts)
            docs.append(_doc(r, when, man.text(r.randint(150, 400)), man.text(r.randint(100, 300)),
                             agent.text(r.randint(300, 800)), output,
                             [(agent.react(), agent.block()) for _ in range(r.randint(1, 3))],
                             nrng, fields, dims, make, bias, lang))
            continue
        decisions = [(text(r.randint(40, 120)), text(r.randint(100, 400), "detail")) for _ in range(r.randint(1, 4))]
        docs.append(_doc(r, when, text(r.randint(150, 500)), text(r.randint(80, 300)),
                         text(r.randint(300, 1500), "detail"), text(r.randint(300, 1500), "detail"),
                         decisions, nrng, fields, dims, make, bias, lang))
    return docs


def _doc(r: random.Random, when: dt.datetime, goal: str, sub: str, context: str, output: str,
         decisions: list[tuple[str, str]], nrng: np.random.Generator, fields: tuple[str, ...], dims: int,
         make: Callable | None, bias: np.ndarray | None, lang: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "_id": ObjectId.from_datetime(when).binary[:4] + r.randbytes(8),
        "experience_id": _uid(r),
        "timestamp": when.replace(microsecond=when.microsecond // 1000 * 1000),
        "session_id": f"sess_{r.randrange(16**12):012x}",
        "primary_goal_description": goal,
        "sub_task_description": sub,
        "initiating_agent_id": r.choice(_AGENTS),
        "involved_components": [{"component_id": _uid(r), "component_name": name, "component_type": r.choice(("AGENT", "TOOL")),
                                 "usage_description": f"used to {r.choice(('extract', 'validate', 'search', 'summarise'))} "
                                                      f"{_words(r, r.randint(1, 3))}"}
                                for name in r.sample(_TOOLS, r.randint(1, 4))],
        "input_context_summary": context,
        "key_decisions_made": [{"decision_summary": s, "decision_reasoning": why,
                                "timestamp": (when - dt.timedelta(seconds=r.randint(1, 900))).replace(microsecond=0)}
                               for s, why in decisions],
        "final_outcome": r.choices(("success", "failure", "partial_success"), (6, 1, 2))[0],
        "final_outcome_reason": r.choice(("All checks passed.", "The vendor API timed out.", "Two line items need review.",
                                          "Completed within budget.")),
        "output_summary": output,
        "feedback_signals": [{"feedback_source": r.choice(("user", "evaluator_agent")), "feedback_rating": r.randint(1, 5),
                              "feedback_content": r.choice(("Looks good.", "Wrong total.", "Too verbose.", "Thanks!"))}
                             for _ in range(r.randint(0, 2))],
        "tags": r.sample(["invoice", "finance", "codegen", "ops", "search", "prod", "staging", lang], r.randint(1, 4)),
        "agent_version": f"{r.randint(1, 3)}.{r.randint(0, 12)}.{r.randint(0, 30)}",
        "model": r.choice(_MODELS),
        "token_usage": {"prompt": r.randint(200, 60000), "completion": r.randint(20, 4000),
                        "cost_usd": round(r.random() * 0.5, 6)},
        "duration_ms": r.randint(80, 600_000),
    }
    doc["_id"] = ObjectId(doc["_id"])
    if make is not None:
        doc["embeddings"] = {name: make(nrng, dims, bias) for name in fields}
    return doc


def fingerprint() -> str:
    """What the corpora depend on that differs between machines: the man page sets."""
    h = hashlib.sha256()
    for lang in ("en", *INTL):
        h.update("\n".join(paragraphs(lang)).encode())
    return h.hexdigest()[:12]
