"""Handlers the step-worker tests run in the child process (importable there)."""

from __future__ import annotations

import os
import time

from veil.transforms.privacy_handler import PrivacyError, PrivacyHandler, StepResult
from veil.transforms.records import Classification


class ToyHandler(PrivacyHandler):
    """Upper-cases the payload; the payload picks a misbehaviour."""

    stage = "toy"

    def load(self):
        return {"loaded_in": os.getpid()}

    def share_key(self) -> str:
        return "toy"

    def detectors(self, model) -> dict:
        return {"toy": "1"}

    def process(self, model, item):
        payload = item.record["payload"]
        if payload == b"sleep":
            time.sleep(3600)
        if payload == b"crash":
            os._exit(3)
        if payload == b"raise":
            raise ValueError("content john.smith@example.com")
        if payload == b"coded":
            raise PrivacyError("TEXT_DECODE_ERROR")
        if payload == b"pid":  # which child ran it
            payload = str(os.getpid()).encode()
        return StepResult(
            payload=payload.upper(),
            content_type="text/plain",
            entity_counts={"TOY": 1},
            classification=Classification("INTERNAL", [], {"TOY": 1}),
            pending_protection=(("payload[0:1]", payload[:1]),),
        )
