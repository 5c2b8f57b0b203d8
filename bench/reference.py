"""The reference sweep: the minimal correct implementation of a sweep's work, the yardstick the clerk's sweep
is measured against (`python -m bench sweep`, `scale`). Never part of the product.

It does what the clerk's sweep does to a case book of active cases, against the same simulators (a second
world of the same seed), with the least code and no framework: the law is the clerk's pure rules
(`models.rules`, `models.exemptions`), the wire is the clerk's adapters (`connectors`), so that the two
differ only in how they keep their records. A page of due debtors at a time:

1. every registry is asked about the page in batches, all at once (the adapters' own limits and retries);
2. one transaction records the page: every lookup, each asset once (unique by registry and identifier,
   updated in place when seen again), an audit event per new or changed hit and case, a notice to the
   applicant of each case with new hits (once a run), and the debtors answered by every registry stamped;
3. the cases with new hits are planned in one transaction: what each owes today (`rules.owed_on`), what
   its live freezes claim, what other authorities and our freezes leave on each deposit, protected purposes
   and the living allowance left free (`exemptions`), the rest allocated largest first
   (`rules.allocate_freezes`), real estate and vehicles seized while the case is short; each measure
   written down with its idempotency key and audited before anything is sent;
4. the measures are sent at once, and one transaction records the answers (status, reference, amount,
   term, queue place; an answer that names another account or case, another measure's reference or more
   than the balance is not trusted and stays `requested`; more than asked is recorded at what was asked and
   the excess released), with an audit event each and a notice of each measure in force or queued;
   steps 3-4 of a page run while the next page is asked (2), one database writer throughout.

At the end, measures left `requested` (a lost answer) are settled by their keys: the registry's status of
the key is recorded, a key it never saw is sent again with the same key. The audit trail is a hash chain
(each event's SHA-256 over the previous hash and its canonical content); `check` walks it.

`python -m bench.reference load DB CASE_FILE` builds the case book; `python -m bench.reference sweep DB
[DAYS_LATER]` sweeps it and prints one JSON line of figures (the registries in CLERK_REGISTRIES, as the
clerk). `check` (in the bench's process) verifies a world afterwards: no case holds more than it owes at the
registries' ledgers, no key was placed twice, every hit recorded once, the chain intact.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import datetime as dt
import hashlib
import json
import resource
import sqlite3
import sys
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from bench.common import status_mb
from clerk.settings import get_settings
from connectors.base import (
    ControlOutcome,
    ControlReply,
    ControlRequest,
    MeasureKind,
    QueryReply,
    QueryRequest,
    RegistryError,
    RegistryPort,
    RejectedError,
    ReleaseRequest,
    Subject,
    SubjectStatus,
)
from connectors.config import RegistryConfig
from connectors.loader import build
from models import rules
from models.exemptions import Exemptions, within_allowance
from models.supervision import bureau_today
from models.values import CaseNumber, DebtorKind, InvalidValue, mask_account, parse_date, parse_yuan

ACTOR = "reference"
PAGE = 1_000
LIVE = ("requested", "effective", "queued")
REQUERY_DAYS = 30

SCHEMA = """
CREATE TABLE cases (id INTEGER PRIMARY KEY, case_number TEXT UNIQUE NOT NULL, court_code TEXT NOT NULL,
  principal_fen BIGINT NOT NULL, judgment_interest_fen BIGINT NOT NULL, costs_fen BIGINT NOT NULL,
  performance_due_on TEXT NOT NULL, status TEXT NOT NULL DEFAULT 'active',
  override_allowance BOOLEAN NOT NULL DEFAULT FALSE, override_protected BOOLEAN NOT NULL DEFAULT FALSE);
CREATE TABLE debtors (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, id_number TEXT UNIQUE NOT NULL,
  name TEXT NOT NULL, dependants INTEGER, last_queried_at TEXT);
CREATE TABLE case_debtors (case_id INTEGER NOT NULL REFERENCES cases(id),
  debtor_id INTEGER NOT NULL REFERENCES debtors(id), PRIMARY KEY (case_id, debtor_id));
CREATE INDEX case_debtors_debtor ON case_debtors (debtor_id);
CREATE TABLE payments (case_id INTEGER NOT NULL REFERENCES cases(id), paid_on TEXT NOT NULL,
  amount_fen BIGINT NOT NULL);
CREATE INDEX payments_case ON payments (case_id);
CREATE TABLE lookups (debtor_id INTEGER NOT NULL REFERENCES debtors(id), registry TEXT NOT NULL,
  request_ref TEXT NOT NULL, status TEXT NOT NULL, error TEXT, at TEXT NOT NULL);
CREATE INDEX lookups_debtor ON lookups (debtor_id);
CREATE TABLE assets (id INTEGER PRIMARY KEY, debtor_id INTEGER NOT NULL REFERENCES debtors(id),
  registry TEXT NOT NULL, kind TEXT NOT NULL, identifier TEXT NOT NULL, balance_fen BIGINT,
  others TEXT, others_fen BIGINT NOT NULL, purpose TEXT, first_seen_at TEXT NOT NULL,
  last_seen_at TEXT NOT NULL, UNIQUE (registry, identifier));
CREATE INDEX assets_debtor ON assets (debtor_id);
CREATE TABLE measures (id INTEGER PRIMARY KEY, case_id INTEGER NOT NULL REFERENCES cases(id),
  asset_id INTEGER NOT NULL REFERENCES assets(id), registry TEXT NOT NULL, kind TEXT NOT NULL,
  status TEXT NOT NULL, requested_fen BIGINT NOT NULL, actual_fen BIGINT, key TEXT UNIQUE NOT NULL,
  reference TEXT, started_on TEXT, expires_on TEXT, queue_position INTEGER, created_at TEXT NOT NULL);
CREATE INDEX measures_case ON measures (case_id, status);
CREATE INDEX measures_asset ON measures (asset_id);
CREATE INDEX measures_reference ON measures (registry, reference);
CREATE TABLE notices (case_id INTEGER NOT NULL REFERENCES cases(id), template TEXT NOT NULL,
  params TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE TABLE audit (seq INTEGER PRIMARY KEY, at TEXT NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
  case_number TEXT, payload TEXT NOT NULL, hash TEXT NOT NULL);
"""


# --- the database: one connection, `?` parameters on both --------------------------------------------


class Db:
    """One connection to SQLite (WAL, synchronous NORMAL, as the clerk opens it) or PostgreSQL (psycopg,
    every commit flushed as the server is set): `?` parameters, transactions as blocks."""

    def __init__(self, url: str) -> None:
        self.sqlite = url.startswith("sqlite")
        if self.sqlite:
            self.conn: Any = sqlite3.connect(
                url.split("///", 1)[1], isolation_level=None, check_same_thread=False
            )
            for pragma in ("journal_mode = WAL", "synchronous = NORMAL", "foreign_keys = ON"):
                self.conn.execute(f"PRAGMA {pragma}")
            self.conn.execute("PRAGMA cache_size = -65536")
        else:
            import psycopg

            # Autocommit outside `transaction()`: each block is its own BEGIN … COMMIT, as on SQLite.
            plain_url = url.replace("postgresql+psycopg://", "postgresql://")
            self.conn = psycopg.connect(plain_url, autocommit=True)

    def _sql(self, sql: str) -> str:
        return sql if self.sqlite else sql.replace("?", "%s")

    def rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self.conn.execute(self._sql(sql), params).fetchall())

    def run(self, sql: str, params: Sequence[Any] = ()) -> None:
        self.conn.execute(self._sql(sql), params)

    def many(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self.sqlite:
            self.conn.executemany(sql, rows)
        else:
            with self.conn.cursor() as cursor:
                cursor.executemany(self._sql(sql), rows)

    def where_in(self, sql: str, values: Sequence[Any], *before: Any) -> list[tuple[Any, ...]]:
        """`sql` with `{in}` standing for a list of placeholders, read in chunks of 500 values."""
        found: list[tuple[Any, ...]] = []
        for i in range(0, len(values), 500):
            chunk = list(values[i : i + 500])
            found += self.rows(sql.replace("{in}", ",".join("?" * len(chunk))), [*before, *chunk])
        return found

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")
        else:
            with self.conn.transaction():
                yield

    def close(self) -> None:
        self.conn.close()


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


# --- the audit trail: a hash chain --------------------------------------------------------------------


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def _link(previous: str, at: str, action: str, case_number: str | None, payload: str) -> str:
    body = json.dumps([previous, at, ACTOR, action, case_number, payload], ensure_ascii=False)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


class Chain:
    """Appends events to the chain in the caller's transaction (one writer: the head is kept here)."""

    def __init__(self, db: Db) -> None:
        self.db = db
        [(self.head,)] = db.rows(
            "SELECT coalesce(max(hash), '') FROM audit WHERE seq = (SELECT max(seq) FROM audit)"
        )
        self.events = 0

    def append(self, events: Iterable[tuple[str, str | None, dict[str, Any]]]) -> None:
        rows = []
        at = _now()
        for action, number, payload in events:
            body = _canonical(payload)
            self.head = _link(self.head, at, action, number, body)
            rows.append((at, ACTOR, action, number, body, self.head))
        self.db.many(
            "INSERT INTO audit (at, actor, action, case_number, payload, hash) VALUES (?,?,?,?,?,?)", rows
        )
        self.events += len(rows)

    def rollback_to(self, head: str, events: int) -> None:
        """A transaction that appended was rolled back: the head is what it was before."""
        self.head, self.events = head, events


# --- the case book ------------------------------------------------------------------------------------


def load(url: str, case_file: Path) -> int:
    """The case file's cases and debtors into a new case book; how many debtors."""
    db = Db(url)
    schema = SCHEMA if db.sqlite else SCHEMA.replace("INTEGER PRIMARY KEY", "BIGSERIAL PRIMARY KEY")
    for statement in schema.split(";"):
        if statement.strip():
            db.run(statement)
    cases: dict[str, int] = {}
    debtors: dict[str, int] = {}
    case_rows: list[tuple[Any, ...]] = []
    debtor_rows: list[tuple[Any, ...]] = []
    links: list[tuple[int, int]] = []
    with case_file.open(encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            number = str(CaseNumber.parse(row["case_number"]))
            if number not in cases:
                cases[number] = len(cases) + 1
                case_rows.append(
                    (
                        cases[number],
                        number,
                        CaseNumber.parse(number).court,
                        parse_yuan(row["principal"], "principal"),
                        parse_yuan(row["judgment_interest"] or "0", "judgment_interest"),
                        parse_yuan(row["costs"] or "0", "costs"),
                        parse_date(row["performance_due_on"], "performance_due_on").isoformat(),
                    )
                )
            if row["debtor_id"] not in debtors:
                debtors[row["debtor_id"]] = len(debtors) + 1
                debtor_rows.append(
                    (debtors[row["debtor_id"]], row["debtor_kind"], row["debtor_id"], row["debtor_name"])
                )
            links.append((cases[number], debtors[row["debtor_id"]]))
    with db.transaction():
        db.many(
            "INSERT INTO cases (id, case_number, court_code, principal_fen, judgment_interest_fen, "
            "costs_fen, performance_due_on) VALUES (?,?,?,?,?,?,?)",
            case_rows,
        )
        db.many("INSERT INTO debtors (id, kind, id_number, name) VALUES (?,?,?,?)", debtor_rows)
        db.many("INSERT INTO case_debtors (case_id, debtor_id) VALUES (?,?)", links)
    db.close()
    return len(debtors)


def owed(row: Sequence[Any], payments: Sequence[rules.Payment], today: dt.date) -> int:
    """What a case (its row: principal, judgment interest, costs, performance due on) owes today."""
    principal, interest, costs, due = row
    debt = rules.Debt(principal, interest, costs, dt.date.fromisoformat(due))
    return rules.owed_on(debt, payments, today).remaining


# --- the sweep ----------------------------------------------------------------------------------------


@dataclass
class Out:
    """A measure written down, to send."""

    key: str
    registry: str
    case_id: int
    asset_id: int
    case_number: str
    kind: str
    requested: int
    balance: int | None
    identifier: str
    request: ControlRequest


@dataclass
class Figures:
    lookups: int = 0
    failed: int = 0
    hits: int = 0
    new_assets: int = 0
    planned: int = 0
    effective: int = 0
    queued: int = 0
    refused: int = 0
    unconfirmed: int = 0
    invalid: int = 0
    excess_released: int = 0
    frozen_fen: int = 0
    told: set[int] = field(default_factory=set)


class Sweep:
    def __init__(self, db: Db, connectors: dict[str, RegistryPort], configs: list[RegistryConfig]) -> None:
        conf = get_settings()
        self.db, self.connectors = db, connectors
        self.sizes = {c.code: c.batch_size for c in configs}
        self.exempt: Exemptions = conf.exemptions()
        self.auto_freeze, self.auto_seize = conf.auto_freeze, frozenset(conf.auto_seize)
        self.chain = Chain(db)
        self.figures = Figures()
        self.writer = ThreadPoolExecutor(1)  # every database step, one after another, off the event loop

    async def _db(self, step: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self.writer, step, *args)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        head, events = self.chain.head, self.chain.events
        try:
            with self.db.transaction():
                yield
        except BaseException:
            self.chain.rollback_to(head, events)
            raise

    async def run(self, now: dt.datetime) -> Figures:
        today = bureau_today(now)
        since = (now - dt.timedelta(days=REQUERY_DAYS)).isoformat(timespec="microseconds")
        after, page_no = 0, 0
        controlling: asyncio.Task[None] | None = None
        while page := await self._db(self._due_page, after, since):
            after, page_no = page[-1][0], page_no + 1
            subjects = [Subject(ref=str(i), kind=DebtorKind(k), id_number=n, name=m) for i, k, n, m in page]
            asks = [
                (
                    code,
                    QueryRequest(
                        request_ref=f"ref-{page_no}-{code}-{i}", subjects=tuple(subjects[i : i + size])
                    ),
                )
                for code, size in self.sizes.items()
                for i in range(0, len(subjects), size)
            ]
            answers = await asyncio.gather(*(self._ask(code, request) for code, request in asks))
            touched = await self._db(self._record_page, [i for i, *_ in page], asks, answers, now)
            if controlling is not None:
                await controlling
            controlling = asyncio.create_task(self._control(sorted(touched), today))
        if controlling is not None:
            await controlling
        await self._settle()
        return self.figures

    def _due_page(self, after: int, since: str) -> list[tuple[Any, ...]]:
        return self.db.rows(
            "SELECT d.id, d.kind, d.id_number, d.name FROM debtors d WHERE d.id > ? "
            "AND (d.last_queried_at IS NULL OR d.last_queried_at < ?) AND EXISTS (SELECT 1 FROM case_debtors "
            "cd JOIN cases c ON c.id = cd.case_id WHERE cd.debtor_id = d.id AND c.status = 'active') "
            "ORDER BY d.id LIMIT ?",
            (after, since, PAGE),
        )

    async def _ask(self, code: str, request: QueryRequest) -> QueryReply | RegistryError:
        try:
            return await self.connectors[code].query(request)
        except RegistryError as exc:
            return exc

    def _record_page(
        self,
        page: list[int],
        asks: list[tuple[str, QueryRequest]],
        answers: list[QueryReply | RegistryError],
        now: dt.datetime,
    ) -> set[int]:
        """Step 2 (see the module): one transaction; the ids of the cases with new or changed hits."""
        at = now.isoformat(timespec="microseconds")
        figures = self.figures
        lookups: list[tuple[Any, ...]] = []
        unanswered: set[int] = set()
        reports: dict[tuple[str, str], tuple[int, Any]] = {}
        for (code, request), answer in zip(asks, answers, strict=True):
            if isinstance(answer, RegistryError):
                for s in request.subjects:
                    lookups.append((int(s.ref), code, request.request_ref, "failed", answer.reason[:200], at))
                    unanswered.add(int(s.ref))
                figures.failed += len(request.subjects)
                continue
            for result in answer.results:
                debtor = int(result.subject_ref)
                pending = result.status is SubjectStatus.PENDING
                lookups.append(
                    (debtor, code, request.request_ref, "pending" if pending else "answered", None, at)
                )
                if pending:
                    unanswered.add(debtor)
                for report in result.assets:
                    reports[(code, report.identifier)] = (debtor, report)
            figures.lookups += len(answer.results)
        with self._transaction():
            self.db.many(
                "INSERT INTO lookups (debtor_id, registry, request_ref, status, error, at) "
                "VALUES (?,?,?,?,?,?)",
                lookups,
            )
            known: dict[tuple[str, str], tuple[Any, ...]] = {}
            by_registry: dict[str, list[str]] = {}
            for code, identifier in reports:
                by_registry.setdefault(code, []).append(identifier)
            for code, identifiers in by_registry.items():
                for found in self.db.where_in(
                    "SELECT registry, identifier, id, balance_fen, others, purpose FROM assets "
                    "WHERE registry = ? AND identifier IN ({in})",
                    identifiers,
                    code,
                ):
                    known[(found[0], found[1])] = found[2:]
            cases: dict[int, list[tuple[int, str]]] = {}
            for debtor, case_id, number in self.db.where_in(
                "SELECT cd.debtor_id, c.id, c.case_number FROM case_debtors cd "
                "JOIN cases c ON c.id = cd.case_id WHERE c.status = 'active' AND cd.debtor_id IN ({in})",
                sorted({d for d, _ in reports.values()}),
            ):
                cases.setdefault(debtor, []).append((case_id, number))
            new: list[tuple[Any, ...]] = []
            changed: list[tuple[Any, ...]] = []
            seen: list[tuple[Any, ...]] = []
            events: list[tuple[str, str | None, dict[str, Any]]] = []
            touched: set[int] = set()
            for (code, identifier), (debtor, report) in reports.items():
                figures.hits += 1
                others = [
                    {"authority": m.authority, "amount_fen": m.amount_fen, "expires_on": str(m.expires_on)}
                    for m in report.other_measures
                ]
                others_text = json.dumps(others, ensure_ascii=False) if others else None
                others_fen = sum(
                    (report.balance_fen or 0) if m.amount_fen is None else m.amount_fen
                    for m in report.other_measures
                )
                row = known.get((code, identifier))
                if row is None:
                    action = "hit.recorded"
                    new.append(
                        (
                            debtor,
                            code,
                            report.asset_kind.value,
                            identifier,
                            report.balance_fen,
                            others_text,
                            others_fen,
                            report.purpose,
                            at,
                            at,
                        )
                    )
                elif (row[1], row[2], row[3]) != (report.balance_fen, others_text, report.purpose):
                    action = "hit.changed"
                    changed.append((report.balance_fen, others_text, others_fen, report.purpose, at, row[0]))
                else:
                    seen.append((at, row[0]))
                    continue
                payload = {
                    "registry": code,
                    "kind": report.asset_kind.value,
                    "asset": mask_account(identifier),
                    "balance_fen": report.balance_fen,
                    "others": len(others),
                }
                for case_id, number in cases.get(debtor, []):
                    touched.add(case_id)
                    events.append((action, number, payload))
            figures.new_assets += len(new)
            self.db.many(
                "INSERT INTO assets (debtor_id, registry, kind, identifier, balance_fen, others, others_fen, "
                "purpose, first_seen_at, last_seen_at) VALUES (?,?,?,?,?,?,?,?,?,?)",
                new,
            )
            self.db.many(
                "UPDATE assets SET balance_fen = ?, others = ?, others_fen = ?, purpose = ?, "
                "last_seen_at = ? WHERE id = ?",
                changed,
            )
            self.db.many("UPDATE assets SET last_seen_at = ? WHERE id = ?", seen)
            tell = sorted(touched - figures.told)
            numbers = {case_id: number for group in cases.values() for case_id, number in group}
            self.db.many(
                "INSERT INTO notices (case_id, template, params, created_at) VALUES (?,?,?,?)",
                [(c, "hits.found", _canonical({"case": numbers[c]}), at) for c in tell],
            )
            figures.told |= set(tell)
            self.db.many(
                "UPDATE debtors SET last_queried_at = ? WHERE id = ?",
                [(at, d) for d in page if d not in unanswered],
            )
            self.chain.append(events)
        return touched

    async def _control(self, case_ids: list[int], today: dt.date) -> None:
        if not case_ids:
            return
        outgoing = await self._db(self._plan, case_ids, today)
        await self._send(outgoing)

    def _plan(self, case_ids: list[int], today: dt.date) -> list[Out]:
        """Step 3 (see the module): one transaction; the measures written down."""
        db = self.db
        with self._transaction():
            cases = {
                r[0]: r[1:]
                for r in db.where_in(
                    "SELECT id, case_number, court_code, status, override_allowance, override_protected, "
                    "principal_fen, judgment_interest_fen, costs_fen, performance_due_on FROM cases "
                    "WHERE id IN ({in})",
                    case_ids,
                )
            }
            payments: dict[int, list[rules.Payment]] = {}
            for case_id, paid_on, amount in db.where_in(
                "SELECT case_id, paid_on, amount_fen FROM payments WHERE case_id IN ({in})", case_ids
            ):
                payments.setdefault(case_id, []).append(rules.Payment(dt.date.fromisoformat(paid_on), amount))
            live: dict[int, list[tuple[Any, ...]]] = {}
            for case_id, asset_id, kind, requested, actual in db.where_in(
                "SELECT case_id, asset_id, kind, requested_fen, actual_fen FROM measures "
                "WHERE status IN ('requested', 'effective', 'queued') AND case_id IN ({in})",
                case_ids,
            ):
                live.setdefault(case_id, []).append((asset_id, kind, requested, actual))
            assets: dict[int, list[tuple[Any, ...]]] = {}
            for row in db.where_in(
                "SELECT cd.case_id, a.id, a.debtor_id, a.registry, a.kind, a.identifier, a.balance_fen, "
                "a.others_fen, a.purpose, d.kind, d.dependants FROM case_debtors cd "
                "JOIN assets a ON a.debtor_id = cd.debtor_id JOIN debtors d ON d.id = cd.debtor_id "
                "WHERE cd.case_id IN ({in}) ORDER BY a.id",
                case_ids,
            ):
                assets.setdefault(row[0], []).append(row[1:])
            held: dict[int, int] = {}
            for asset_id, requested, actual in db.where_in(
                "SELECT asset_id, requested_fen, actual_fen FROM measures WHERE kind = 'freeze' "
                "AND status IN ('requested', 'effective', 'queued') AND asset_id IN ({in})",
                sorted({a[0] for group in assets.values() for a in group}),
            ):
                held[asset_id] = held.get(asset_id, 0) + max(requested, actual or 0)
            written: list[Out] = []
            for case_id in case_ids:
                number, court, status, no_allowance, no_protection, *debt = cases[case_id]
                remaining = owed(debt, payments.get(case_id, []), today)
                mine = live.get(case_id, [])
                covered = sum(max(req, act or 0) for _, kind, req, act in mine if kind == "freeze")
                if status != "active" or remaining <= covered:
                    continue
                found = assets.get(case_id, [])
                freeze = 0
                if self.auto_freeze:
                    exempt = self.exempt.for_case(
                        allowance_overridden=bool(no_allowance), protected_overridden=bool(no_protection)
                    )
                    by_debtor: dict[int, list[rules.Holding]] = {}
                    people: dict[int, int | None] = {}
                    for (
                        asset_id,
                        debtor,
                        _,
                        kind,
                        _,
                        balance,
                        others,
                        purpose,
                        debtor_kind,
                        dependants,
                    ) in found:
                        if kind != "deposit" or purpose in exempt.protected:
                            continue
                        room = max((balance or 0) - others - held.get(asset_id, 0), 0)
                        by_debtor.setdefault(debtor, []).append(rules.Holding(asset_id, room))
                        if debtor_kind == DebtorKind.PERSON:
                            people[debtor] = dependants
                    holdings: list[rules.Holding] = []
                    for debtor, group in by_debtor.items():
                        group.sort(key=lambda h: (held.get(h.key, 0) > 0, -h.available))
                        if debtor in people:
                            group = within_allowance(group, exempt.allowance(court, today, people[debtor]))
                        holdings += group
                    holdings.sort(key=lambda h: -h.available)
                    by_id = {a[0]: a for a in found}
                    for allocation in rules.allocate_freezes(remaining, covered, holdings):
                        written.append(
                            self._out(case_id, number, by_id[allocation.key], "freeze", allocation.amount)
                        )
                        held[allocation.key] = held.get(allocation.key, 0) + allocation.amount
                        freeze += allocation.amount
                if covered + freeze < remaining:
                    seized = {asset_id for asset_id, kind, _, _ in mine if kind == "seizure"}
                    for asset in found:
                        if asset[3] in self.auto_seize and asset[0] not in seized:
                            written.append(self._out(case_id, number, asset, "seizure", None))
            at = _now()
            db.many(
                "INSERT INTO measures (case_id, asset_id, registry, kind, status, requested_fen, key, "
                "created_at) VALUES (?,?,?,?,'requested',?,?,?)",
                [(o.case_id, o.asset_id, o.registry, o.kind, o.requested, o.key, at) for o in written],
            )
            self.chain.append(
                (
                    "measure.requested",
                    o.case_number,
                    {
                        "kind": o.kind,
                        "registry": o.registry,
                        "asset": mask_account(o.identifier),
                        "amount_fen": o.requested or None,
                        "key": o.key,
                    },
                )
                for o in written
            )
        self.figures.planned += len(written)
        return written

    def _out(self, case_id: int, number: str, asset: Sequence[Any], kind: str, amount: int | None) -> Out:
        asset_id, debtor, registry, asset_kind, identifier, balance = asset[:6]
        return _measure(
            uuid.uuid4().hex,
            registry,
            case_id,
            number,
            kind,
            amount or 0,
            (asset_id, debtor, asset_kind),
            identifier,
            balance,
        )

    async def _send(self, outgoing: Sequence[Out], *, by_status: bool = False) -> None:
        async def one(item: Out) -> ControlReply | RegistryError | None:
            registry = self.connectors[item.registry]
            try:
                if by_status:
                    reply = await registry.status(item.key)
                    if reply is not None:
                        return reply
                return await registry.control(item.request)
            except RegistryError as exc:
                return exc

        answers = await asyncio.gather(*(one(item) for item in outgoing))
        excess = await self._db(self._record_answers, list(outgoing), answers)
        for item, reference, amount in excess:
            request = ReleaseRequest(
                idempotency_key=uuid.uuid4().hex, registry_reference=reference, amount_fen=amount
            )
            try:
                reply = await self.connectors[item.registry].release(request)
            except RegistryError:
                continue  # the measure is recorded at what was asked; the excess is the registry's to lift
            if reply.outcome is not ControlOutcome.REFUSED:
                self.figures.excess_released += 1
                await self._db(
                    self._audit_one,
                    "measure.excess_released",
                    item.case_number,
                    {"key": item.key, "released_fen": amount},
                )

    def _audit_one(self, action: str, number: str, payload: dict[str, Any]) -> None:
        with self._transaction():
            self.chain.append([(action, number, payload)])

    def _record_answers(
        self, outgoing: list[Out], answers: list[ControlReply | RegistryError | None]
    ) -> list[tuple[Out, str, int]]:
        """Step 4 (see the module): one transaction; the excess held beyond what was asked, to release."""
        figures = self.figures
        updates: list[tuple[Any, ...]] = []
        notes: list[tuple[Any, ...]] = []
        refused: list[tuple[str]] = []
        events: list[tuple[str, str | None, dict[str, Any]]] = []
        excess: list[tuple[Out, str, int]] = []
        at = _now()
        with self._transaction():
            taken = {
                (registry, reference): key
                for registry, reference, key in self.db.where_in(
                    "SELECT registry, reference, key FROM measures WHERE reference IN ({in})",
                    sorted(
                        {
                            a.registry_reference
                            for a in answers
                            if isinstance(a, ControlReply) and a.registry_reference
                        }
                    ),
                )
            }
            for item, answer in zip(outgoing, answers, strict=True):
                if isinstance(answer, RejectedError):
                    refused.append((item.key,))
                    events.append(
                        ("measure.failed", item.case_number, {"key": item.key, "reason": answer.reason})
                    )
                    figures.refused += 1
                    continue
                if not isinstance(answer, ControlReply) or answer.outcome is ControlOutcome.PENDING:
                    figures.unconfirmed += 1
                    continue
                if answer.outcome is ControlOutcome.REFUSED:
                    refused.append((item.key,))
                    events.append(
                        ("measure.failed", item.case_number, {"key": item.key, "reason": answer.reason})
                    )
                    figures.refused += 1
                    continue
                problem = _untrusted(item, answer, taken)
                if problem is not None:
                    figures.invalid += 1
                    events.append(
                        ("measure.invalid_reply", item.case_number, {"key": item.key, "problem": problem})
                    )
                    continue
                actual = answer.amount_fen if item.kind == "freeze" else None
                if actual is not None and actual > item.requested:
                    excess.append((item, answer.registry_reference or "", actual - item.requested))
                    actual = item.requested
                status = "queued" if answer.outcome is ControlOutcome.QUEUED else "effective"
                if answer.registry_reference:
                    taken[(item.registry, answer.registry_reference)] = item.key
                updates.append(
                    (
                        status,
                        answer.registry_reference,
                        actual,
                        _iso(answer.started_on),
                        _iso(answer.expires_on),
                        answer.queue_position,
                        item.key,
                    )
                )
                payload = {
                    "key": item.key,
                    "kind": item.kind,
                    "requested_fen": item.requested or None,
                    "actual_fen": actual,
                    "reference": answer.registry_reference,
                    "started_on": _iso(answer.started_on),
                    "expires_on": _iso(answer.expires_on),
                    "queue_position": answer.queue_position,
                }
                action = (
                    "measure.partial" if answer.outcome is ControlOutcome.PARTIAL else f"measure.{status}"
                )
                events.append((action, item.case_number, payload))
                notes.append(
                    (
                        item.case_id,
                        f"measure.{status}",
                        _canonical({"case": item.case_number, "kind": item.kind, "amount_fen": actual}),
                        at,
                    )
                )
                if status == "effective":
                    figures.effective += 1
                    figures.frozen_fen += actual or 0
                else:
                    figures.queued += 1
            self.db.many(
                "UPDATE measures SET status = ?, reference = ?, actual_fen = ?, started_on = ?, "
                "expires_on = ?, queue_position = ? WHERE key = ? AND status = 'requested'",
                updates,
            )
            self.db.many(
                "UPDATE measures SET status = 'failed' WHERE key = ? AND status = 'requested'", refused
            )
            self.db.many(
                "INSERT INTO notices (case_id, template, params, created_at) VALUES (?,?,?,?)", notes
            )
            self.chain.append(events)
        return excess

    async def _settle(self) -> None:
        """Measures left `requested` (lost or unconfirmed answers): asked by key, sent again if never seen."""
        rows = await self._db(
            self.db.rows,
            "SELECT m.key, m.registry, m.case_id, c.case_number, m.kind, m.requested_fen, a.id, a.debtor_id, "
            "a.kind, a.identifier, a.balance_fen FROM measures m JOIN cases c ON c.id = m.case_id "
            "JOIN assets a ON a.id = m.asset_id WHERE m.status = 'requested'",
        )
        if not rows:
            return
        self.figures.unconfirmed -= len(rows)
        outgoing = [
            _measure(key, code, case, number, kind, fen, (asset, debtor, asset_kind), identifier, balance)
            for key, code, case, number, kind, fen, asset, debtor, asset_kind, identifier, balance in rows
        ]
        await self._send(outgoing, by_status=True)


def _measure(
    key: str,
    registry: str,
    case_id: int,
    number: str,
    kind: str,
    requested: int,
    asset: tuple[int, int, str],
    identifier: str,
    balance: int | None,
) -> Out:
    """A measure written down (`asset`: its id, its debtor's id, its kind), with the request sent for it."""
    asset_id, debtor, asset_kind = asset
    request = ControlRequest(
        idempotency_key=key,
        case_number=number,
        subject_ref=str(debtor),
        asset_identifier=identifier,
        kind=MeasureKind(kind),
        amount_fen=requested or None,
        years=rules.TERM_YEARS[rules.AssetKind(asset_kind)],
    )
    return Out(key, registry, case_id, asset_id, number, kind, requested, balance, identifier, request)


def _iso(day: dt.date | None) -> str | None:
    return day.isoformat() if day else None


def _untrusted(item: Out, reply: ControlReply, taken: dict[tuple[str, str], str]) -> str | None:
    """Why an answer cannot be recorded as ours: it names another account or case, a reference another of
    our measures holds, or more than the account's balance."""
    if reply.account is not None and reply.account != item.identifier:
        return "another account"
    if reply.case_number is not None:
        try:
            if str(CaseNumber.parse(reply.case_number)) != item.case_number:
                return "another case"
        except InvalidValue:
            return "another case"
    reference = reply.registry_reference
    if reference is not None and taken.get((item.registry, reference), item.key) != item.key:
        return "another measure's reference"
    too_much = reply.amount_fen is not None and item.balance is not None and reply.amount_fen > item.balance
    if item.kind == "freeze" and too_much:
        return "more than the balance"
    return None


async def _sweep(url: str, later_days: int) -> dict[str, Any]:
    conf = get_settings()
    connectors = build(conf.registries, conf.allowed_adapters)
    db = Db(url)
    began = time.time()
    started = time.perf_counter()
    try:
        figures = await Sweep(db, dict(connectors), list(conf.registries)).run(
            dt.datetime.now(dt.UTC) + dt.timedelta(days=later_days)
        )
        seconds = time.perf_counter() - started
    finally:
        await asyncio.gather(*(c.aclose() for c in connectors.values()))
        db.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "began": began,
        "ended": began + seconds,
        "lookups": figures.lookups,
        "failed": figures.failed,
        "hits": figures.hits,
        "new_assets": figures.new_assets,
        "planned": figures.planned,
        "effective": figures.effective,
        "queued": figures.queued,
        "refused": figures.refused,
        "unconfirmed": figures.unconfirmed,
        "invalid": figures.invalid,
        "frozen_fen": figures.frozen_fen,
        "peak_rss_mb": status_mb("VmHWM"),
        "cpu_s": usage.ru_utime + usage.ru_stime,
    }


# --- the checks, afterwards ---------------------------------------------------------------------------


def ledgers(regs: Sequence[RegistryConfig]) -> list[dict[str, Any]]:
    """Every measure the simulators' ledgers hold (`/_sim/ledger`), with its registry's code."""
    found = []
    for config in regs:
        reply = httpx.get(f"{config.base_url}/_sim/ledger", timeout=120)
        reply.raise_for_status()
        found += [m | {"registry": config.code} for m in reply.json()["measures"]]
    return found


def check_ledgers(regs: Sequence[RegistryConfig], case_file: Path, today: dt.date) -> dict[str, int]:
    """What the registries hold, against the case file: cases whose deposits held exceed what they owe
    (must be 0), idempotency keys placed more than once (must be 0), and the measures placed."""
    debts: dict[str, tuple[int, int, int, str]] = {}
    with case_file.open(encoding="utf-8-sig") as handle:
        for row in csv.DictReader(handle):
            debts[str(CaseNumber.parse(row["case_number"]))] = (
                parse_yuan(row["principal"], "principal"),
                parse_yuan(row["judgment_interest"] or "0", "judgment_interest"),
                parse_yuan(row["costs"] or "0", "costs"),
                row["performance_due_on"],
            )
    measures = ledgers(regs)
    held: dict[str, int] = {}
    keys: dict[str, int] = {}
    for m in measures:
        keys[m["key"]] = keys.get(m["key"], 0) + 1
        if m["status"] != "released" and m["held_fen"]:
            number = str(CaseNumber.parse(m["case_no"]))
            held[number] = held.get(number, 0) + m["held_fen"]
    over = sum(1 for number, amount in held.items() if amount > owed(debts[number], [], today))
    return {
        "placed": len(measures),
        "cases over the cap": over,
        "keys placed twice": sum(1 for n in keys.values() if n > 1),
    }


def check_book(url: str) -> dict[str, int]:
    """The reference's case book: its audit chain walked from the start (events that fail it: must be 0),
    assets recorded twice (must be 0), measures by status."""
    db = Db(url)
    try:
        broken, head, events = 0, "", 0
        for at, action, number, payload, stored in db.rows(
            "SELECT at, action, case_number, payload, hash FROM audit ORDER BY seq"
        ):
            head = _link(head, at, action, number, payload)
            broken += head != stored
            head = stored
            events += 1
        [(twice,)] = db.rows(
            "SELECT count(*) FROM (SELECT registry, identifier FROM assets GROUP BY registry, identifier "
            "HAVING count(*) > 1) t"
        )
        statuses = dict(db.rows("SELECT status, count(*) FROM measures GROUP BY status"))
        [(assets,)] = db.rows("SELECT count(*) FROM assets")
    finally:
        db.close()
    return {"audit events": events, "chain breaks": broken, "assets": assets, "assets twice": twice} | {
        f"measures {status}": n for status, n in sorted(statuses.items())
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.reference", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    loading = sub.add_parser("load", help="a new case book from a case file")
    loading.add_argument("url")
    loading.add_argument("case_file", type=Path)
    sweeping = sub.add_parser("sweep", help="sweep the case book (registries from CLERK_REGISTRIES)")
    sweeping.add_argument("url")
    sweeping.add_argument("days_later", nargs="?", type=int, default=0, help="as if this many days passed")
    args = parser.parse_args()
    if args.command == "load":
        print(json.dumps({"debtors": load(args.url, args.case_file)}))
    else:
        print(json.dumps(asyncio.run(_sweep(args.url, args.days_later))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
