"""The price book: the shipped prices.yaml, a user's file over it (MMQ_PRICES_FILE), per-target overrides
over that, and the look-up "what does <provider>/<model> cost for this kind of job, on this day".

Why a module of its own: prices are data that change and that people edit, so loading them is where a
bad file must be refused with its file, line, entry and reason (a typo must not silently price a batch
at zero), and where the rules of the look-up live in one place: aliases (an Azure deployment, the
model an adapter maps an OpenAI name to), inheritance (Azure → OpenAI, Vertex → Gemini, Bedrock →
Anthropic), dated snapshots, and the period in force. An unknown model is not an error: `find` answers
None and `no_price` says so; quotes and costs carry that message and the job still runs.

Merging: a file or override in the same shape replaces a provider's settings key by key, its aliases
name by name and its models model by model (a model entry wholesale, with its history). The resulting
version says what was merged: "2026-12-03.1+acme-2027-01" (the user file's own `version`) or
"2026-12-03.1+prices.yaml@1a2b3c4d" (file name and content hash when it names none).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from mmq.pricing.price_file import PriceBookError, Problem, compose_yaml, locate, parse_text, validate_doc
from mmq.pricing.schema import (
    BatchPolicy,
    ChatPrices,
    ImagePrices,
    ModelEntry,
    ModelPeriod,
    PriceDoc,
    ProviderEntry,
    SpeechPrices,
    TranscriptionPrices,
    VisionRule,
)

ENV_VAR = "MMQ_PRICES_FILE"
SHIPPED_FILE = "prices.yaml"

# job kind -> the block of a model entry that prices it (a translation is billed as a transcription)
BLOCK_FOR_KIND = {
    "chat": "chat",
    "image": "image",
    "speech": "speech",
    "transcription": "transcription",
    "translation": "transcription",
}

# How a model id is reduced, step by step, when it has no entry of its own: each step's result is tried
# in turn (with the provider's aliases), so the most specific name wins and an entry's `exclude` can keep
# a snapshot with other prices from falling back to its family.
_REDUCTIONS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("resource path", re.compile(r"^(?:projects/[^/]+/locations/[^/]+/)?(?:publishers/[^/]+/)?models/")),
    (
        "Bedrock ARN",
        re.compile(r"^arn:aws[\w-]*:bedrock:[^:]*:[^:]*:(?:foundation-model|inference-profile)/"),
    ),
    ("Bedrock region prefix", re.compile(r"^(?:us|eu|apac|ap|jp|au|ca|us-gov|global)\.")),
    ("version suffix", re.compile(r"@[\w.-]+$")),
    ("Bedrock version", re.compile(r"-v\d+:\d+$")),
    ("vendor prefix", re.compile(r"^anthropic\.")),
    ("snapshot date", re.compile(r"-(?:\d{4}-\d{2}-\d{2}|\d{8}|latest)$")),
)


# ------------------------------------------------------------------------------------------ merging
def _merge(base: dict[str, ProviderEntry], over: PriceDoc) -> dict[str, ProviderEntry]:
    providers = dict(base)
    for name, entry in over.providers.items():
        old = providers.get(name)
        if old is None:
            providers[name] = entry
            continue
        fields = {key: getattr(old, key) for key in ProviderEntry.model_fields}
        for key in entry.model_fields_set:
            if key == "models":
                fields["models"] = {**old.models, **entry.models}
            elif key == "aliases":
                fields["aliases"] = {**old.aliases, **entry.aliases}
            else:
                fields[key] = getattr(entry, key)
        providers[name] = ProviderEntry(**fields)
    return providers


def _chain(providers: Mapping[str, ProviderEntry], name: str) -> list[str]:
    chain: list[str] = []
    while name in providers and name not in chain:
        chain.append(name)
        name = providers[name].inherits or ""
    return chain


def _check_references(
    providers: Mapping[str, ProviderEntry], doc: PriceDoc, source: str, data: Any, text: str | None
) -> None:
    """Inheritance and aliases that point nowhere, for the providers `doc` names."""
    root = compose_yaml(text)
    problems: list[Problem] = []

    def problem(loc: tuple[Any, ...], reason: str) -> None:
        line, path = locate(loc, data, root)
        problems.append(Problem(line, path, reason))

    for name, entry in doc.providers.items():
        merged = providers[name]
        if merged.inherits:
            seen = [name]
            parent: str | None = merged.inherits
            while parent:
                if parent not in providers:
                    problem(("providers", name, "inherits"), f"inherits unknown provider {parent!r}")
                    break
                if parent in seen:
                    cycle = " -> ".join([*seen, parent])
                    problem(("providers", name, "inherits"), f"inheritance cycle: {cycle}")
                    break
                seen.append(parent)
                parent = providers[parent].inherits
        chain = _chain(providers, name)
        for alias, target in entry.aliases.items():
            if not any(target in providers[p].models for p in chain):
                problem(
                    ("providers", name, "aliases", alias),
                    f"alias {alias!r} -> {target!r}: no model {target!r} in {' / '.join(chain)}",
                )
    if problems:
        raise PriceBookError(source, problems)


# ------------------------------------------------------------------------------------------ look-up
@dataclass(frozen=True)
class Match:
    """Where a price was found: asked provider/model, the entry it is priced as, the period in force."""

    provider: str
    model: str
    priced_provider: str
    priced_model: str
    period: ModelPeriod
    batch: BatchPolicy | None
    default_max_tokens: int | None

    @property
    def priced_as(self) -> str:
        return f"{self.priced_provider}/{self.priced_model}"

    @property
    def chat(self) -> ChatPrices | None:
        return self.period.chat

    @property
    def image(self) -> ImagePrices | None:
        return self.period.image

    @property
    def speech(self) -> SpeechPrices | None:
        return self.period.speech

    @property
    def transcription(self) -> TranscriptionPrices | None:
        return self.period.transcription

    @property
    def vision(self) -> VisionRule | None:
        return self.period.vision

    def effective_from(self, block: str) -> date:
        own = getattr(self.period, block, None)
        return (own.effective_from if own is not None else None) or self.period.effective_from

    def source(self, block: str) -> str:
        own = getattr(self.period, block, None)
        return (own.source if own is not None else None) or self.period.source


def model_candidates(model: str) -> list[str]:
    """The model id, then each reduction of it (see _REDUCTIONS), most specific first."""
    out = [model]
    for _, pattern in _REDUCTIONS:
        reduced = pattern.sub("", out[-1])
        if reduced and reduced != out[-1]:
            out.append(reduced)
    return out


def _period(entry: ModelEntry, at: date) -> ModelPeriod | None:
    periods = [p for p in (entry, *entry.history) if p.effective_from <= at]
    return max(periods, key=lambda p: p.effective_from) if periods else None


def today() -> date:
    return datetime.now(UTC).date()


@dataclass(frozen=True)
class PriceBook:
    """The prices in force: the shipped book with whatever was merged over it."""

    version: str
    providers: Mapping[str, ProviderEntry]
    sources: tuple[str, ...] = ()
    # find's answers: a worker prices every job of a batch with the same few models (the book is frozen,
    # so an answer never changes for a given day)
    _found: dict[tuple[str, str, str, date], Match | None] = field(
        default_factory=dict, compare=False, repr=False
    )

    def find(self, provider: str, model: str, kind: str, at: date | None = None) -> Match | None:
        """The prices of `provider`/`model` for `kind` on `at` (today), or None: never a guess beyond the
        documented look-up (aliases, inheritance, the reductions of model_candidates)."""
        key = (provider, model, str(kind), at or today())
        if key in self._found:
            return self._found[key]
        if len(self._found) > 4096:  # many models or many days: keep it bounded
            self._found.clear()
        found = self._found[key] = self._find(provider, model, kind, key[3])
        return found

    def _find(self, provider: str, model: str, kind: str, at: date) -> Match | None:
        block = BLOCK_FOR_KIND.get(str(kind))
        if not block or not isinstance(model, str) or not model:
            return None
        chain = _chain(self.providers, provider)
        if not chain:
            return None
        aliases: dict[str, str] = {}
        for name in reversed(chain):
            aliases.update(self.providers[name].aliases)
        day = at
        tried: list[str] = []
        for candidate in model_candidates(model):
            tried.append(candidate)
            names = [candidate] + ([aliases[candidate]] if candidate in aliases else [])
            for name in names:
                for pname in chain:
                    entry = self.providers[pname].models.get(name)
                    if entry is None or any(t in entry.exclude for t in tried):
                        continue
                    period = _period(entry, day)
                    if period is None or getattr(period, block) is None:
                        continue
                    batch = period.batch or next(
                        (self.providers[p].batch for p in chain if self.providers[p].batch), None
                    )
                    if batch is not None and batch.kinds is not None and str(kind) not in batch.kinds:
                        batch = None  # this kind has no batch tier at this provider
                    return Match(
                        provider=provider,
                        model=model,
                        priced_provider=pname,
                        priced_model=name,
                        period=period,
                        batch=batch,
                        default_max_tokens=next(
                            (
                                self.providers[p].default_max_tokens
                                for p in chain
                                if self.providers[p].default_max_tokens
                            ),
                            None,
                        ),
                    )
        return None

    def no_price(self, provider: str, model: str, kind: str | None = None) -> str:
        """The message for a model the book cannot price (names the kind when the model is priced for
        another kind)."""
        known = kind is not None and any(
            self.find(provider, model, other) for other in ("chat", "image", "speech", "transcription")
        )
        return f"no price for {provider}/{model}" + (f" ({kind})" if known else "")

    # ---------------------------------------------------------------------------------- merging
    def merged(
        self, doc: PriceDoc, label: str, source: str, data: Any = None, text: str | None = None
    ) -> PriceBook:
        """This book with `doc` over it; `label` goes into the version, `source` into errors."""
        providers = _merge(dict(self.providers), doc)
        _check_references(providers, doc, source, data, text)
        return PriceBook(f"{self.version}+{label}", providers, (*self.sources, source))

    def with_file(self, path: str | os.PathLike[str]) -> PriceBook:
        """This book with a user's price file (YAML, or JSON by its .json name) over it."""
        source = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise PriceBookError(source, [Problem(None, "", f"cannot read the file: {e}")]) from None
        data = parse_text(text, source)
        doc = validate_doc(data, source, text)
        digest = hashlib.sha256(text.encode()).hexdigest()[:8]
        label = doc.version or f"{Path(path).name}@{digest}"
        return self.merged(doc, label, source, data, text)

    def with_overrides(self, overrides: Mapping[str, Any], label: str = "override") -> PriceBook:
        """This book with a routing target's overrides (a mapping in the price-file shape) over it."""
        data = dict(overrides)
        doc = validate_doc(data, label, None)
        digest = hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:8]
        return self.merged(doc, doc.version or f"{label}@{digest}", label, data, None)


# ---------------------------------------------------------------------------------------- loading
def parse_book(text: str, source: str) -> PriceBook:
    """A complete price book from text (it must name its `version`)."""
    data = parse_text(text, source)
    doc = validate_doc(data, source, text)
    if not doc.version:
        raise PriceBookError(source, [Problem(None, "version", "a price book needs a version")])
    providers = _merge({}, doc)
    _check_references(providers, doc, source, data, text)
    return PriceBook(doc.version, providers, (source,))


@functools.cache
def default_book() -> PriceBook:
    """The price book shipped with mmq (mmq/pricing/prices.yaml), parsed once per process."""
    text = resources.files("mmq.pricing").joinpath(SHIPPED_FILE).read_text(encoding="utf-8")
    return parse_book(text, f"mmq/pricing/{SHIPPED_FILE}")


def load_book(user_file: str | os.PathLike[str] | None = None) -> PriceBook:
    """The shipped book, with `user_file` over it when given; raises PriceBookError for a bad file."""
    book = default_book()
    return book.with_file(user_file) if user_file else book


def book_from_env(environ: Mapping[str, str] | None = None) -> PriceBook:
    """load_book(MMQ_PRICES_FILE): for callers without the settings object at hand."""
    env = os.environ if environ is None else environ
    return load_book(env.get(ENV_VAR) or None)
