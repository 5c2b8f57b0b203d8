"""Configuration, read once from the environment (prefix `CLERK_`) and an optional `.env` file.

Defaults run the embedded demo: a SQLite file under `./var`. A wrong value stops the start with the
variable's name (`SettingsError`).
"""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from functools import lru_cache
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

from connectors.config import SIM_CREDENTIAL, RegistryConfig, simulated_registries
from models import proof
from models.access import Person, Role
from models.exemptions import Exemptions, LivingStandard
from models.policy import Policy
from models.rules import MIN_RENEWAL_LEAD_DAYS, ReleaseOrder
from models.supervision import NodeRules, Track, TriageRules
from models.values import InvalidValue

ENV_PREFIX = "CLERK_"

#: Prefect's settings as the clerk runs it, each unless the environment says otherwise. No internet here and
#: no reason to tell anyone: neither the server's analytics nor the SDK's telemetry (which reads the
#: DO_NOT_TRACK convention, prints an "anonymous usage data" notice on a terminal and writes under
#: PREFECT_HOME); and Prefect's temporary in-process server (no
#: PREFECT_API_URL) gets 90 s to start instead of 20: on a shared 2-core host it took longer than 20 s and
#: `clerk demo` or a benchmark failed with "Timed out while attempting to connect to ephemeral Prefect API
#: server" (Prefect's own CI raised it to 60 s, PrefectHQ/prefect#20248).
PREFECT_DEFAULTS = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
}


def use_prefect_defaults() -> None:
    """The clerk's defaults for Prefect's settings, where the environment sets none (before Prefect loads)."""
    for name, value in PREFECT_DEFAULTS.items():
        os.environ.setdefault(name, value)


class SettingsError(Exception):
    """A setting is missing or wrong; the message names the environment variable."""


class PersonSetting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    courts: list[str] = Field(min_length=1)
    roles: list[Role] = Field(min_length=1)
    phone: str | None = Field(
        None,
        pattern=r"^1[3-9][0-9]{9}$",
        description="A mobile number (11 digits) for the one-time codes that prove a decision.",
    )
    public_key: str | None = Field(
        None,
        description="The person's own Ed25519 public key (PEM, or 32 bytes in base64 or hex), for "
        "decisions signed with `clerk approve --key`.",
    )

    @field_validator("public_key")
    @classmethod
    def _public_key(cls, value: str | None) -> str | None:
        if value:
            try:
                proof.public_key(value, "public_key")
            except InvalidValue as exc:
                raise ValueError(exc.rule) from None
        return value or None


class LivingStandardSetting(BaseModel):
    """A local minimum living standard (低保), monthly, from a day on, for a court or a region of courts."""

    model_config = ConfigDict(extra="forbid")

    region: str = Field(
        min_length=1, max_length=16, description="A court code or its start: 豫, 豫01, 豫0185."
    )
    monthly_yuan: Decimal = Field(gt=0, max_digits=12, decimal_places=2)
    since: dt.date

    def standard(self) -> LivingStandard:
        return LivingStandard(self.region, int(self.monthly_yuan * 100), self.since)


def _example_standards() -> list[LivingStandardSetting]:
    """Examples near the published urban standards of the sample courts' regions (2024-25): a bureau sets
    its own, from its local civil-affairs bureau's figures, with the day each applies from."""
    return [
        LivingStandardSetting(region=r, monthly_yuan=Decimal(y), since=dt.date(2025, 1, 1))
        for r, y in (("豫", "700"), ("京", "1450"), ("蒙", "850"), ("赣", "900"), ("粤", "1200"))
    ]


#: Account purposes the law protects from freezing, as banks name them, each with its source. Reviewed by
#: the bureau's legal office before it is changed; CLERK_PROTECTED_PURPOSES replaces the whole list.
PROTECTED_PURPOSES = {
    # 《保障农民工工资支付条例》(2020) art. 32: a project's wage special account is not frozen or deducted
    # for anything but the wages of the migrant workers on the project.
    "migrant_wage": "保障农民工工资支付条例 第三十二条",
    # SPC notice 法[2000]19号: social-insurance funds are not attached or enforced against.
    "social_insurance_fund": "最高人民法院关于不得对社会保险基金采取财产保全和执行措施的通知",
    # Trade Union Law and the SPC's interpretation on applying it: a union's funds account is not frozen.
    "union_funds": "工会法; 最高人民法院关于在民事审判工作中适用《工会法》若干问题的解释",
    # Party dues are not enforced against (SPC reply; the bureau's legal office confirms the citation).
    "party_dues": "最高人民法院关于党费不得强制执行的批复",
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    data_dir: Path = Field(Path("var"), description="Where the embedded database and files live.")
    database_url: SecretStr | None = Field(
        None,
        description="SQLAlchemy URL; default sqlite:///<data_dir>/clerk.db. "
        "PostgreSQL: postgresql+psycopg://user:password@host/dbname",
    )
    renewal_lead_days: int = Field(
        30, description=f"Renew a measure this many days before it lapses (at least {MIN_RENEWAL_LEAD_DAYS})."
    )
    credit_code_exceptions_file: Path | None = Field(
        None,
        description="A reviewed list of legal pilot credit codes that fail the GB 32100 check; "
        "default: the list shipped in clerk/data.",
    )
    import_max_bytes: int = Field(200 * 1024 * 1024, gt=0, description="Largest case file accepted.")
    actor: str | None = Field(None, description="Who is at the keyboard, for the audit trail; default $USER.")
    registries: list[RegistryConfig] = Field(
        default_factory=simulated_registries,
        description="The registries in use, as a JSON list; default: the five simulators of `clerk sim`.",
    )
    allowed_adapters: list[str] = Field(
        ["bank-json", "real-estate-xml", "vehicle-json"],
        description="Connector entry points that may be loaded; anything else stops the start.",
    )

    requery_days: int = Field(30, ge=1, le=365, description="Re-query debtors of active cases this often.")
    terminated_requery_days: int = Field(
        182,
        ge=30,
        le=365,
        description="Re-query terminated-for-now cases this often (the rule: every 6 months) …",
    )
    terminated_years: int = Field(5, ge=1, le=10, description="… for this many years after termination.")
    auto_freeze: bool = Field(
        True, description="Freeze deposits up to what is owed without waiting for a judge."
    )
    auto_seize: list[str] = Field(
        ["real_estate", "vehicle"],
        description="Asset kinds seized without a judge while deposits fall short (others wait for a judge).",
    )
    living_standards: list[LivingStandardSetting] = Field(
        default_factory=_example_standards,
        description="Local minimum living standards, as a JSON list of {region, monthly_yuan, since}: a "
        "person keeps standard × CLERK_LIVING_ALLOWANCE_MONTHS × (1 + dependants) unfrozen across all "
        "deposits (查扣冻规定 art. 3). Default: examples for the sample courts' provinces; set your own.",
    )
    living_allowance_months: int = Field(
        3, ge=0, le=24, description="Months of the living standard a person keeps (0: the rule is off)."
    )
    protected_purposes: dict[str, str] = Field(
        default_factory=lambda: dict(PROTECTED_PURPOSES),
        description="Account purposes never frozen automatically, as a JSON object {purpose: legal source}.",
    )
    sweep_cron: str = Field("0 * * * *", description="When the sweep runs (cron, Asia/Shanghai time).")
    collect_cron: str = Field(
        "*/5 * * * *", description="When late answers are collected (cron, Asia/Shanghai)."
    )
    prefect_port: int = Field(
        4200, ge=1024, le=65535, description="Port of the Prefect server `clerk serve` starts."
    )
    runner_poll_s: float = Field(
        0.25,
        ge=0.2,
        le=60,
        description="How often `clerk serve` asks the server for runs to start: a judge's case query "
        "waits up to this long before it starts (Prefect's default is 10 s). 0.25 s keeps the query's "
        "p95 under 3 s; it costs about a tenth of one core while nothing runs (1 s: a twentieth; "
        "bench/README.md).",
    )
    unconfirmed_after_s: int = Field(
        60, ge=0, description="Ask the status of a measure unconfirmed this long."
    )
    global_limits: bool = Field(
        False,
        description="Every request to a registry first takes a slot of the Prefect global rate limit "
        "registry-<code> (created by `clerk setup`), so that many workers together keep to the registry's "
        "requests_per_second. On for workers of a shared pool (`clerk up` sets it); a missing limit is "
        "an error, not a silent pass.",
    )

    release_order: ReleaseOrder = Field(
        ReleaseOrder.NEWEST,
        description="Which freezes an excess over what is owed is released from first: newest, oldest, "
        "largest or smallest.",
    )
    watch_listen_s: float = Field(
        905,
        ge=1,
        le=3600,
        description="How long one watch run follows the banks. It runs every 15 minutes: a little longer "
        "than that, so that runs overlap and no moment goes unwatched (overlapping runs are safe). One run "
        "watching 15 minutes, not one a minute: the UI's list of runs stays readable.",
    )
    watch_poll_s: float = Field(
        20, ge=1, le=600, description="How often the watch asks banks without a push feed for balances."
    )
    watch_feed_wait_s: float = Field(
        5, ge=0, le=25, description="Long-poll wait on a bank's deposit feed (below the registry timeout)."
    )
    triage_simple_below_yuan: int = Field(
        100_000, ge=0, description="Cases owing less than this go to the simple track (简执)."
    )
    query_within_hours: int = Field(24, ge=1, le=240, description="Node: query within this of filing.")
    control_within_hours: int = Field(24, ge=1, le=240, description="Node: control within this of a hit.")
    node_warn_hours: int = Field(4, ge=0, le=72, description="Warn this long before a query or control node.")
    supervision_days: dict[str, int] = Field(
        default_factory=lambda: {"fast": 10, "simple": 20, "normal": 30, "special": 60, "none": 30},
        description="Days without progress before a supervision alert, by track (and 'none' for untriaged).",
    )
    supervision_warn_days: int = Field(5, ge=0, le=60, description="Warn this many days before supervision.")
    approval_timeout_s: int = Field(
        72 * 3600, ge=10, description="A deduction waits this long for a judge's decision, then times out."
    )
    approval_reminder_s: int = Field(
        24 * 3600, ge=5, description="The judge is reminded of an undecided deduction after this long."
    )
    approval_poll_s: int = Field(
        2, ge=1, le=60, description="How often a paused deduction checks for a decision."
    )
    decision_proof: bool = Field(
        True,
        description="A decision that moves money (or a rejection) must carry proof of the deciding person: a "
        "one-time code sent to the person's phone, or a signature with the person's own key (CLERK_PEOPLE's "
        "phone, public_key). Off only for a trial.",
    )
    decision_code_ttl_s: int = Field(300, ge=30, le=3600, description="How long a one-time code is good.")
    decision_tries_per_run: int = Field(
        5, ge=1, le=100, description="Wrong codes a decision may take before no code is taken for a while."
    )
    decision_tries_per_person: int = Field(
        10, ge=1, le=1000, description="Wrong codes one person may give (all runs) before the same."
    )
    decision_lockout_s: int = Field(
        900, ge=60, le=86400, description="How long no code is taken after too many wrong ones."
    )
    court_account: str = Field(
        "95588000000000000001",
        pattern=r"^[0-9]{8,32}$",
        description="The court's enforcement-money account at its bank; a deduction goes to its case's "
        "sub-account (一案一账号), or here while the case has none yet.",
    )
    court_bank_url: str | None = Field(
        "http://127.0.0.1:18501",
        description="The court's bank (sub-accounts, statement, balances; connectors/court_bank.py); empty: "
        "no case money is followed.",
    )
    court_bank_credential: SecretStr = Field(
        SecretStr(SIM_CREDENTIAL), description="The court's bank's credential."
    )
    money_listen_s: float = Field(
        0,
        ge=0,
        le=3600,
        description="How long one money-statement run keeps following the court's bank's statement after "
        "reading it, asking for new entries with a long poll (its push: money placed within seconds). 0: "
        "read and stop, the schedule (money_cron) polls. Where the bank offers the long poll (the simulator "
        "does), set it a little longer than money_cron's interval (305 for every 5 minutes): runs overlap "
        "safely, a line is recorded once by its reference.",
    )
    court_bank_requests_per_second: float = Field(
        50.0,
        gt=0,
        le=10_000,
        description="Requests a second at most to the court's bank (a sub-account is opened a request "
        "each: 10,000 new cases take 200 s at 50 a second).",
    )
    money_cron: str = Field(
        "*/5 * * * *",
        description="When the court's bank statement is read and new cases get sub-accounts (cron).",
    )
    reconcile_cron: str = Field(
        "0 7 * * *", description="When the bank and the journal are reconciled (cron, before the report)."
    )
    unidentified_alert_days: int = Field(
        3,
        ge=1,
        le=60,
        description="Unidentified money (不明款) older than this is alerted (local rule: 3 days).",
    )
    notifier_url: str | None = Field(
        "http://127.0.0.1:18401",
        description="The SMS gateway for notices to judges and applicants; empty: notices stay pending.",
    )
    notifier_credential: SecretStr = Field(
        SecretStr(SIM_CREDENTIAL), description="The SMS gateway's credential."
    )
    watch_cron: str = Field(
        "*/15 * * * *", description="When the deposit watch runs (cron, Asia/Shanghai; see watch_listen_s)."
    )
    renewal_cron: str = Field("0 1 * * *", description="When measures due are renewed (cron, Asia/Shanghai).")
    release_cron: str = Field(
        "*/5 * * * *", description="When excess and ended cases' measures are released."
    )
    deadlines_cron: str = Field(
        "*/15 * * * *", description="When node deadlines are checked and notices sent."
    )
    report_cron: str = Field("0 8 * * *", description="When the daily report is made (cron, Asia/Shanghai).")
    sequencer_cron: str = Field(
        "*/10 * * * *", description="When audit events are placed in the log and its head signed (cron)."
    )
    audit_key: SecretStr | None = Field(
        None, description="The court's Ed25519 key that signs the audit log's heads (PEM, or 64 hex digits)."
    )
    audit_key_file: Path | None = Field(
        None,
        description="A file holding that key; default <data_dir>/audit-signing.key, made on first use "
        "(mode 0600). Keep it out of the repository and back it up: heads signed with a lost key still "
        "verify with its public key.",
    )

    people: dict[str, PersonSetting] = Field(
        default_factory=dict,
        description="Who may query cases and decide for them besides each case's own judge, and how each "
        'proves a decision, as JSON: {"赵执行": {"courts": ["豫0185"], "roles": ["officer"]}, "王法官": '
        '{"courts": ["豫0185"], "roles": ["judge"], "phone": "13800000000"}}; roles judge, officer, '
        'supervisor, clerk; courts "*" for all; phone and/or public_key for whoever decides.',
    )

    @property
    def access(self) -> dict[str, Person]:
        return {
            name: Person(frozenset(p.courts), frozenset(p.roles), p.phone, p.public_key)
            for name, p in self.people.items()
        }

    @property
    def proof_limits(self) -> proof.Limits:
        return proof.Limits(
            code_ttl_s=self.decision_code_ttl_s,
            tries_per_run=self.decision_tries_per_run,
            tries_per_person=self.decision_tries_per_person,
            lockout_s=self.decision_lockout_s,
        )

    def policy(self) -> Policy:
        """What the clerk may do without a judge, as the use cases take it (models.policy)."""
        return Policy(
            auto_freeze=self.auto_freeze, auto_seize=frozenset(self.auto_seize), exempt=self.exemptions()
        )

    def exemptions(self) -> Exemptions:
        """What may never be frozen, as the rules take it (models.exemptions)."""
        return Exemptions(
            tuple(s.standard() for s in self.living_standards),
            self.living_allowance_months,
            frozenset(self.protected_purposes),
        )

    @field_validator("supervision_days")
    @classmethod
    def _supervision_days(cls, value: dict[str, int]) -> dict[str, int]:
        needed = {"fast", "simple", "normal", "special", "none"}
        if set(value) != needed:
            raise ValueError(f"must name exactly the tracks {sorted(needed)}")
        if any(not 1 <= days <= 365 for days in value.values()):
            raise ValueError("each must be 1 to 365 days")
        return value

    @field_validator("notifier_url", "court_bank_url")
    @classmethod
    def _service_url(cls, value: str | None) -> str | None:
        if value in (None, ""):
            return None
        assert value is not None
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @property
    def node_rules(self) -> NodeRules:
        days = {(None if k == "none" else Track(k)): v for k, v in self.supervision_days.items()}
        return NodeRules(
            query_within=dt.timedelta(hours=self.query_within_hours),
            control_within=dt.timedelta(hours=self.control_within_hours),
            warn_before=dt.timedelta(hours=self.node_warn_hours),
            renewal_lead_days=self.renewal_lead_days,
            supervision_days=days,
            supervision_warn_days=self.supervision_warn_days,
        )

    @property
    def triage_rules(self) -> TriageRules:
        return TriageRules(simple_below_fen=self.triage_simple_below_yuan * 100)

    @field_validator(
        "sweep_cron",
        "collect_cron",
        "watch_cron",
        "renewal_cron",
        "release_cron",
        "deadlines_cron",
        "report_cron",
        "sequencer_cron",
    )
    @classmethod
    def _cron(cls, value: str) -> str:
        if len(value.split()) != 5:
            raise ValueError("must be a cron expression of 5 fields, e.g. '0 * * * *'")
        return value

    @field_validator("auto_seize")
    @classmethod
    def _seizable(cls, value: list[str]) -> list[str]:
        unknown = set(value) - {"real_estate", "vehicle"}
        if unknown:
            raise ValueError(f"unknown asset kind(s) {sorted(unknown)}: use real_estate, vehicle")
        return value

    @field_validator("registries")
    @classmethod
    def _unique_codes(cls, value: list[RegistryConfig]) -> list[RegistryConfig]:
        codes = [r.code for r in value]
        if len(codes) != len(set(codes)):
            raise ValueError("registry codes must be unique")
        return value

    @field_validator("renewal_lead_days")
    @classmethod
    def _lead_days(cls, value: int) -> int:
        if value < MIN_RENEWAL_LEAD_DAYS:
            raise ValueError(f"must be at least {MIN_RENEWAL_LEAD_DAYS} days")
        return value

    @field_validator("database_url")
    @classmethod
    def _url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and not value.get_secret_value().startswith(("sqlite", "postgresql")):
            raise ValueError("must be a sqlite:// or postgresql+psycopg:// URL")
        return value

    @property
    def effective_database_url(self) -> str:
        """The URL to connect with. It may hold a password: show `database_display` instead."""
        if self.database_url is not None:
            return self.database_url.get_secret_value()
        return f"sqlite:///{self.data_dir / 'clerk.db'}"

    def registry_codes(self, asked: list[str] | None, field: str = "registries") -> set[str]:
        """The registry codes asked for (all of these settings' when none), or InvalidValue naming the
        unknown ones and the known."""
        known = [c.code for c in self.registries]
        if not asked:
            return set(known)
        unknown = sorted(set(asked) - set(known))
        if unknown:
            raise InvalidValue(
                field, f"unknown registry {', '.join(unknown)}: the settings have {', '.join(known)}"
            )
        return set(asked)

    @property
    def effective_audit_key_file(self) -> Path:
        return self.audit_key_file or self.data_dir / "audit-signing.key"

    @property
    def database_display(self) -> str:
        return make_url(self.effective_database_url).render_as_string(hide_password=True)


def load_settings() -> Settings:
    """Read the settings now, turning pydantic's error into one that names the variables."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(map(str, e['loc'])).upper()}: {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise SettingsError(f"bad setting: {problems}") from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return load_settings()
