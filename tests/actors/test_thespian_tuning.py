"""Thespian as the service sets it up (actors/system.py `tune_thespian`): its descriptions of messages name the type only."""

from __future__ import annotations

from dataclasses import dataclass

from thespian.system.transport import ReceiveEnvelope, TransmitIntent

from actors.system import tune_thespian


@dataclass
class Carrying:
    secret: str


def test_thespian_describes_a_message_by_its_type_never_its_content() -> None:
    tune_thespian()
    message = Carrying("tok-not-for-logs")
    envelope = ReceiveEnvelope("the-sender", message).identify()
    intent = TransmitIntent("the-target", message).identify()
    assert "Carrying" in envelope and "the-sender" in envelope
    assert "Carrying" in intent and "the-target" in intent
    assert "tok-not-for-logs" not in envelope + intent + str(ReceiveEnvelope("s", message))
