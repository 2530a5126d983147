"""The Pools view (key 4) and the launch form's choice of compute, against a real ledger with a pool in it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.widgets import DataTable, Select

from fceval_tui.domain.models import utcnow
from fceval_tui.ledger import Ledger
from fceval_tui.ledger_pools import READY, PoolBook
from fceval_tui.ui.app import make_app
from tests.helpers.ui import Clock, fixed, seed

SMALL = (120, 30)


@pytest.fixture
def with_pool(state_dir, settings_factory, monkeypatch):
    """A console whose ledger has pool `warm`: one busy instance (job r0demo01-003 on it), one idle."""
    monkeypatch.setenv("XDG_CONFIG_HOME", "/nonexistent/config")
    monkeypatch.setattr("fceval_tui.ui.app.teardown.find_orphans", lambda settings, ledger: [])
    ledger = Ledger.open(state_dir, clock=Clock())
    seed(ledger)
    book = PoolBook(ledger)
    pool = book.open_pool("warm", 2, 180, 30, {"ec2_instance_type": "c5ad.large", "region": "us-east-1"})
    for seq, instance_id in enumerate(("i-0busy", "i-0idle"), start=1):
        book.add_instance(pool.name, instance_id, seq, utcnow() + timedelta(minutes=30))
        book.update_instance(instance_id, state=READY, slots=1, idle_since=utcnow() - timedelta(minutes=7))
    assert book.claim("warm", "r0demo01-003", 1).id == "i-0busy"
    yield make_app(settings_factory(), ledger, clock=fixed())
    ledger.close()


async def wait_for(pilot, predicate, timeout=20.0):
    for _ in range(int(timeout / 0.05)):
        if predicate():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached in time")


async def test_the_pools_view_shows_each_instance_with_its_jobs_and_idle_time(with_pool):
    async with with_pool.run_test(size=SMALL) as pilot:
        await pilot.press("4")
        table = with_pool.screen.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2)
        busy, idle = (table.get_row(key) for key in ("i-0busy", "i-0idle"))
        assert busy[0] == "warm" and busy[4] == "r0demo01-003" and busy[5] == ""
        assert idle[4] == "" and idle[5].startswith("7:")
        assert "1 pool(s) up" in with_pool.screen.sub_title and "1/2 slots busy" in with_pool.screen.sub_title


async def test_the_launch_form_offers_new_instances_or_a_pool_that_is_up(with_pool):
    async with with_pool.run_test(size=SMALL) as pilot:
        await pilot.press("n")
        compute = with_pool.screen.query_one("#compute", Select)
        await wait_for(pilot, lambda: len(compute._options) == 2)
        assert [label for label, _ in compute._options] == ["new instances", "warm pool warm"]
        assert compute.value == ""
