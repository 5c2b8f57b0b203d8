"""An SMS gateway, simulated (like the courts' 12368 platform): accepts notices, delivers each key once,
and shows what it delivered at /_sim/messages."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


class SmsGatewaySimulator:
    def __init__(self, credential: str) -> None:
        self.credential = credential
        self.messages: dict[str, dict[str, Any]] = {}
        self.app = Starlette(
            routes=[
                Route("/sms/v1/messages", self._send, methods=["POST"]),
                Route("/sms/v1/health", self._health),
                Route("/_sim/messages", self._dump),
            ]
        )

    async def _send(self, request: Request) -> Response:
        if request.headers.get("authorization") != f"Bearer {self.credential}":
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        try:
            body = await request.json()
            key, to = str(body["key"]), str(body["to"])
            message = {
                "case_no": str(body["case_no"]),
                "to": to,
                "template": str(body["template"]),
                "params": dict(body["params"]),
            }
            if to == "person":
                message["phone"] = str(body["phone"])
        except (ValueError, KeyError, TypeError):
            return JSONResponse({"error": "bad_request"}, status_code=400)
        if to not in ("judge", "applicant", "person"):
            return JSONResponse({"error": "unknown_recipient"}, status_code=400)
        if key in self.messages:
            return JSONResponse({"key": key, "status": "duplicate"})
        self.messages[key] = message
        return JSONResponse({"key": key, "status": "queued"})

    def codes(self, case_no: str) -> list[str]:
        """The one-time codes sent for a case's decisions, oldest first: what a judge reads on the phone."""
        return [
            str(m["params"]["code"])
            for m in self.messages.values()
            if m["template"] == "decision.code" and m["case_no"] == case_no
        ]

    async def _health(self, request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def _dump(self, request: Request) -> Response:
        return JSONResponse({"messages": [{"key": k, **m} for k, m in self.messages.items()]})
