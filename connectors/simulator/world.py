"""A seeded world for the simulators: debtors with valid IDs, and what each registry holds for them.

Shares, roughly as enforcement bureaus report them: about 55 % of debtors hold deposits (at one to three
banks; 15 % of organisations' accounts carry a purpose the law protects), 12 % real estate, 20 % vehicles.
About 15 % of holdings are already under another court's measure, whose terms end over the next two years
(so that queued measures later take effect), and a tenth of the accounts receive deposits over the next
days. The same seed gives the same world.
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Sequence
from dataclasses import dataclass

from connectors.simulator.bank import BankSimulator
from connectors.simulator.base import RegistrySimulator
from connectors.simulator.ledger import Holding, Restriction
from connectors.simulator.property import PropertySimulator
from connectors.simulator.synthetic import (
    COURTS,
    case_rows_for,
    credit_code,
    firm_name,
    person_name,
    resident_id,
)
from connectors.simulator.vehicle import VehicleSimulator
from models.rules import AssetKind
from models.supervision import bureau_today
from models.values import PROVINCE_WORDS, DebtorKind

SHARE_DEPOSITS, SHARE_PROPERTY, SHARE_VEHICLE = 0.55, 0.12, 0.20
SHARE_RESTRICTED, SHARE_DEPOSIT_ARRIVING = 0.15, 0.10
#: Organisations' accounts whose purpose the law protects (a project's wage account, …), as banks name them;
#: drawn from a generator of their own, so that the rest of a seed's world stays as it was.
SHARE_PROTECTED = 0.15
PROTECTED_PURPOSES = ("migrant_wage", "social_insurance_fund", "union_funds", "party_dues")
_PLATE_LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"


@dataclass(frozen=True, slots=True)
class SimDebtor:
    kind: DebtorKind
    id_number: str
    name: str
    court: str


def make_debtors(rng: random.Random, count: int) -> list[SimDebtor]:
    """`count` debtors with unique, valid IDs; about one in five an organisation."""
    seen: set[str] = set()
    debtors: list[SimDebtor] = []
    while len(debtors) < count:
        court = COURTS[rng.randrange(len(COURTS))]
        person = rng.random() < 0.8
        id_number = resident_id(rng, court.region) if person else credit_code(rng, court.region)
        if id_number in seen:
            continue
        seen.add(id_number)
        name = person_name(rng) if person else firm_name(rng, court)
        kind = DebtorKind.PERSON if person else DebtorKind.ORGANISATION
        debtors.append(SimDebtor(kind, id_number, name, court.code))
    return debtors


def case_rows(debtors: Sequence[SimDebtor], seed: int, today: dt.date) -> list[dict[str, str]]:
    """The rows of a case file that puts these debtors into cases (one to three per case, at their court):
    the clerk writes them (`clerk.casebook.casefile.write_case_file`)."""
    return case_rows_for([(d.kind.value, d.id_number, d.name, d.court) for d in debtors], seed, today)


def populate(
    simulators: Sequence[RegistrySimulator], debtors: Sequence[SimDebtor], seed: int, now: dt.datetime
) -> dict[str, int]:
    """Give the debtors holdings at the simulators; returns how many holdings each simulator got."""
    rng = random.Random(seed)
    purposes = random.Random(seed ^ 0x5EED)
    banks = [s for s in simulators if isinstance(s, BankSimulator)]
    estates = [s for s in simulators if isinstance(s, PropertySimulator)]
    dmvs = [s for s in simulators if isinstance(s, VehicleSimulator)]
    counts = {s.code: 0 for s in simulators}
    today = bureau_today(now)
    serial = 0

    def others() -> list[Restriction]:
        if rng.random() >= SHARE_RESTRICTED:
            return []
        court = COURTS[rng.randrange(len(COURTS))].code
        until = today + dt.timedelta(days=rng.randrange(10, 730))
        return [Restriction(f"（{today.year - 1}）{court}执{rng.randrange(1, 9999)}号", None, until)]

    for debtor in debtors:
        if banks and rng.random() < SHARE_DEPOSITS:
            for bank in rng.sample(banks, k=min(len(banks), rng.choice((1, 1, 1, 2, 3)))):
                serial += 1
                balance = int(rng.lognormvariate(9.5, 1.6)) * 100  # median ~13,000 yuan
                restrictions = others()
                for r in restrictions:
                    r.amount_fen = rng.randrange(1, max(balance, 2))
                purpose = (
                    purposes.choice(PROTECTED_PURPOSES)
                    if debtor.kind is DebtorKind.ORGANISATION and purposes.random() < SHARE_PROTECTED
                    else None
                )
                account = Holding(
                    f"6222{serial:015d}",
                    debtor.id_number,
                    AssetKind.DEPOSIT,
                    balance,
                    restrictions=restrictions,
                    purpose=purpose,
                )
                holding = bank.ledger.add(account)
                counts[bank.code] += 1
                if rng.random() < SHARE_DEPOSIT_ARRIVING:
                    at = now + dt.timedelta(minutes=rng.randrange(1, 7 * 24 * 60))
                    bank.ledger.schedule_deposit(
                        at, holding.identifier, int(rng.lognormvariate(9, 1.2)) * 100
                    )
        if estates and rng.random() < SHARE_PROPERTY:
            estate = estates[rng.randrange(len(estates))]
            serial += 1
            cert = f"{debtor.court[0]}({today.year - rng.randrange(1, 15)})不动产权第{serial:07d}号"
            area = f"{rng.uniform(40, 220):.2f}"
            estate.ledger.add(Holding(cert, debtor.id_number, AssetKind.REAL_ESTATE,
                                      description=f"{debtor.court}辖区某路{rng.randrange(1, 999)}号|{area}",
                                      restrictions=others()))  # fmt: skip
            counts[estate.code] += 1
        if dmvs and rng.random() < SHARE_VEHICLE:
            dmv = dmvs[rng.randrange(len(dmvs))]
            serial += 1
            plate = _plate(debtor.court[0], serial)
            dmv.ledger.add(Holding(plate, debtor.id_number, AssetKind.VEHICLE,
                                   description=f"{rng.choice(('02', '02', '01', '52'))}|{rng.choice(_MAKES)}",
                                   restrictions=others()))  # fmt: skip
            counts[dmv.code] += 1
    return counts


_MAKES = ("大众牌", "丰田牌", "比亚迪牌", "长城牌", "五菱牌", "解放牌")


def _plate(province: str, serial: int) -> str:
    """A unique plate for `serial`: province word, a city letter, five letters and digits."""
    assert province in PROVINCE_WORDS
    city = _PLATE_LETTERS[serial % len(_PLATE_LETTERS)]
    return f"{province}{city}{(serial // len(_PLATE_LETTERS)) % 100_000:05d}"
