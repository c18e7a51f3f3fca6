"""Embedded-mode queue numbers (StubBroker) and the JSON log lines."""

from __future__ import annotations

import json
import logging

from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message

from core.jobs import QUEUES
from core.logging_setup import REQUEST_ID, JsonFormatter, work_row
from core.queues import stub_dead_letters, stub_report, stub_requeue


def test_stub_broker_report_dead_letters_and_requeue() -> None:
    """Ready and dead counts come from the in-process queues; requeue moves a letter back."""
    broker = StubBroker()
    for queue in QUEUES:
        broker.declare_queue(queue)
    broker.enqueue(Message("deploys", "deploys.run", ("a" * 24,), {}, {}))
    dead = Message("deploys", "deploys.run", ("b" * 24,), {}, {})
    broker.dead_letters_by_queue["deploys"].append(_Proxy(dead))

    report = stub_report(broker)
    deploys = next(q for q in report.queues if q.name == "deploys")
    assert (deploys.ready, deploys.dead, report.embedded) == (1, 1, True)
    [letter] = stub_dead_letters(broker, "deploys")
    assert letter.args == ["b" * 24] and letter.message_id == dead.message_id

    assert stub_requeue(broker, "deploys", dead.message_id)
    assert not stub_requeue(broker, "deploys", dead.message_id)
    after = next(q for q in stub_report(broker).queues if q.name == "deploys")
    assert (after.ready, after.dead) == (2, 0)


class _Proxy:
    """What the StubBroker keeps in its dead letters: a MessageProxy-like wrapper."""

    def __init__(self, message: Message) -> None:
        self.message = message
        self.message_id = message.message_id
        self.actor_name = message.actor_name
        self.args = message.args
        self.kwargs = message.kwargs


def test_json_log_line_carries_request_and_work_row_ids() -> None:
    """One JSON object per record, with the ids of the request and the work row."""
    record = logging.LogRecord("kontena.x", logging.INFO, __file__, 1, "hello %s", ("you",), None)
    token = REQUEST_ID.set("req-1")
    try:
        with work_row("deploy", "d" * 24):
            line = JsonFormatter().format(record)
    finally:
        REQUEST_ID.reset(token)
    entry = json.loads(line)
    assert "\n" not in line
    assert entry["level"] == "info" and entry["logger"] == "kontena.x"
    assert entry["message"] == "hello you" and entry["request_id"] == "req-1"
    assert entry["work_kind"] == "deploy" and entry["work_row_id"] == "d" * 24
    assert entry["time"].endswith("+00:00")
