"""Notices to judges and applicants through an SMS gateway (like the courts' 12368 platform).

The gateway knows the parties' phone numbers from the case system: a notice names the case and the role
(judge or applicant), a template and its parameters (case numbers, amounts, dates: never an ID, name or
account number). A one-time code that proves a decision goes to a person's own phone instead (`to:
person`, `phone`), or to the case's judge. Each notice carries an idempotency key; the gateway delivers a
key once, so a notice resent after a lost reply is not delivered twice.

    POST /sms/v1/messages   {key, case_no, to: judge|applicant|person, [phone], template, params}
                            -> {key, status: queued}
"""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from connectors.http import ClientLimits, RegistryClient, parse_json


class Notice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    key: str = Field(min_length=8, max_length=64)
    case_number: str
    to: Literal["judge", "applicant", "person"]
    template: str = Field(pattern=r"^[a-z][a-z0-9_.]{1,63}$")
    params: dict[str, Any] = Field(repr=False)  # a one-time code travels here: never in a repr
    phone: str | None = Field(None, repr=False)  # to: person only

    @model_validator(mode="after")
    def _phone_for_a_person(self) -> Notice:
        if (self.to == "person") != (self.phone is not None):
            raise ValueError("phone: given for a notice to a person, and only then")
        return self


class NotifierPort(Protocol):
    async def send(self, notice: Notice) -> None: ...

    async def aclose(self) -> None: ...


class _Accepted(BaseModel):
    model_config = ConfigDict(extra="ignore")

    key: str
    status: Literal["queued", "sent", "duplicate"]


class SmsGateway:
    """The HTTP notifier: retries and limits from the same client the registries use."""

    def __init__(self, base_url: str, credential: SecretStr, timeout_s: float = 10.0) -> None:
        self.client = RegistryClient(
            "sms-gateway", base_url, credential, ClientLimits(timeout_s=timeout_s, requests_per_second=0)
        )

    async def send(self, notice: Notice) -> None:
        body = {
            "key": notice.key,
            "case_no": notice.case_number,
            "to": notice.to,
            "template": notice.template,
            "params": notice.params,
        }
        if notice.phone is not None:
            body["phone"] = notice.phone
        # Safe to resend: the gateway delivers a key once.
        response = await self.client.call(
            "POST", "/sms/v1/messages", reference=notice.key, safe=True, json_body=body
        )
        parse_json(response, _Accepted, "sms-gateway", notice.key)

    async def aclose(self) -> None:
        await self.client.aclose()
