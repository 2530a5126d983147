"""The operator's identity in the action log: the AWS caller ARN (sts:GetCallerIdentity, once per process,
in the background) with the local user@host, or user@host alone when AWS is not in play or STS cannot
be reached; an action never waits on STS on the UI thread and never fails because of it."""

from __future__ import annotations

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fceval_tui.domain.models import JobSpec
from fceval_tui.services import operator
from tests.helpers.cli import run_cli

ARN = "arn:aws:iam::123456789012:user/alice"
MOTO_ARN = "arn:aws:sts::123456789012:user/moto"  # what moto's GetCallerIdentity answers


class LateSts:
    """An STS endpoint on 127.0.0.1 that holds every request until released, then answers GetCallerIdentity
    as AWS does (STS API reference: GetCallerIdentity, an XML GetCallerIdentityResponse)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.requests = 0
        late = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                late.requests += 1
                late.release.wait(30)
                body = (
                    '<GetCallerIdentityResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                    f"<GetCallerIdentityResult><Arn>{ARN}</Arn><UserId>AIDATEST</UserId>"
                    "<Account>123456789012</Account></GetCallerIdentityResult>"
                    "<ResponseMetadata><RequestId>r-1</RequestId></ResponseMetadata></GetCallerIdentityResponse>"
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def late_sts(monkeypatch):
    sts = LateSts()
    monkeypatch.setenv("AWS_ENDPOINT_URL", sts.url)
    monkeypatch.setattr(operator, "_process", operator.CallerLookup())  # a fresh process's lookup
    yield sts
    sts.close()


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_arn_is_asked_once_in_the_background_and_never_waited_for_without_leave(late_sts, settings_factory):
    settings = settings_factory(FCEVAL_BACKEND="ec2")
    local = operator.local_identity()
    operator.start_lookup(settings)
    assert operator.identity() == local  # at once, while STS holds the request
    for _ in range(3):
        operator.start_lookup(settings, ["ec2"])
    late_sts.release.set()
    assert operator.identity(wait=10) == f"{ARN} ({local})"
    assert late_sts.requests == 1  # once per process


def test_no_lookup_when_aws_is_not_in_play(late_sts, settings_factory):
    operator.start_lookup(settings_factory(), ["local"])
    late_sts.release.set()
    assert operator.identity(wait=1) == operator.local_identity()
    assert late_sts.requests == 0


def test_cancel_logs_the_callers_arn_with_the_local_user(aws_env, ledger, state_dir):
    run, (job,) = ledger.create_run("ec2", 1, [JobSpec("a", "t")])
    res = run_cli("cancel", job.id, "--json", state_dir=state_dir)
    assert res.code == 0, res.err
    (event,) = [e for e in ledger.events(run_id=run.id) if e.kind == "operator_cancel"]
    assert event.detail["by"] == f"{MOTO_ARN} ({operator.local_identity()})"


def test_an_unreachable_sts_costs_an_action_nothing(ledger, state_dir):
    run, (job,) = ledger.create_run("ec2", 1, [JobSpec("a", "t")])
    res = run_cli(
        "cancel", job.id, "--json", state_dir=state_dir, env={"AWS_ENDPOINT_URL": f"http://127.0.0.1:{_closed_port()}"}
    )
    assert res.code == 0, res.err
    assert json.loads(res.out) == {"cancelled": [job.id]}
    (event,) = [e for e in ledger.events(run_id=run.id) if e.kind == "operator_cancel"]
    assert event.detail["by"] == operator.local_identity()


async def test_the_console_stays_responsive_while_sts_holds_the_lookup(late_sts, settings_factory, ledger, monkeypatch):
    from fceval_tui.ui.app import make_app
    from fceval_tui.ui.screens.events import EventsScreen

    monkeypatch.setattr("fceval_tui.ui.app.teardown.find_orphans", lambda settings, ledger: [])
    app = make_app(settings_factory(FCEVAL_BACKEND="ec2"), ledger)
    async with app.run_test(size=(120, 36)) as pilot:
        for _ in range(100):
            if late_sts.requests:
                break
            await pilot.pause(0.1)
        assert late_sts.requests == 1  # asked on start-up, and still held
        await pilot.press("3")
        await pilot.pause(0.2)
        assert isinstance(app.screen, EventsScreen)
        assert operator.identity() == operator.local_identity()
        late_sts.release.set()
        await pilot.pause(0.1)
    assert operator.identity(wait=10) == f"{ARN} ({operator.local_identity()})"
