"""The Pools view (key 4) and the launch form's choice of compute, against a real ledger with a pool in it."""

from __future__ import annotations

from datetime import timedelta

import pytest
from textual.widgets import DataTable, Select

from fceval_tui.domain.models import utcnow
from fceval_tui.ledger_pools import READY, PoolBook
from fceval_tui.ui.app import make_app
from tests.helpers.ui import fixed, wait_for

SMALL = (120, 30)


@pytest.fixture
def with_pool(seeded_ledger, quiet_console, settings_factory):
    """A console whose ledger has pool `warm`: one busy instance (job r0demo01-003 on it), one idle."""
    ledger = seeded_ledger
    book = PoolBook(ledger)
    pool = book.open_pool("warm", 2, 180, 30, {"ec2_instance_type": "c5ad.large", "region": "us-east-1"})
    for seq, instance_id in enumerate(("i-0busy", "i-0idle"), start=1):
        book.add_instance(pool.name, instance_id, seq, utcnow() + timedelta(minutes=30))
        book.update_instance(instance_id, state=READY, slots=1, idle_since=utcnow() - timedelta(minutes=7))
    assert book.claim("warm", "r0demo01-003", 1).id == "i-0busy"
    return make_app(settings_factory(), ledger, clock=fixed())


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


async def test_pool_up_from_the_pools_view_checks_the_form_then_brings_the_pool_up(with_pool, monkeypatch):
    """u opens the form; bad values are named under it (fields marked) and nothing starts; good ones start
    `pool up` with the values as typed, its progress shown as notifications."""
    from textual.widgets import Button, Input, Label

    from fceval_tui.services import pool as pool_service
    from fceval_tui.services.pool_view import PoolStatus
    from fceval_tui.ui.screens.pool_up import PoolUpScreen

    started = []

    def fake_up(settings, ledger, name, size, instance_type=None, ttl_minutes=None, on_progress=None, **_):
        started.append((name, size, instance_type, ttl_minutes))
        on_progress(f"pool {name}: bringing up {size} x {instance_type}")
        pool = PoolBook(ledger).open_pool(name, int(size), float(ttl_minutes), 30, {})
        return PoolStatus(pool, [])

    monkeypatch.setattr(pool_service, "pool_up", fake_up)
    async with with_pool.run_test(size=SMALL) as pilot:
        await pilot.press("4")
        await pilot.press("u")
        await wait_for(pilot, lambda: isinstance(with_pool.screen, PoolUpScreen))
        form = with_pool.screen
        form.query_one("#name", Input).value = "Bad Name"
        form.query_one("#size", Input).value = "0"
        form.query_one("#instance_type", Input).value = "c5ad.large"
        form.query_one("#ttl", Input).value = "soon"
        assert await pilot.click("#up")
        await pilot.pause()
        errors = str(form.query_one("#errors", Label).render())
        assert "'Bad Name' is not a pool name" in errors and "size '0'" in errors and "soon" in errors, errors
        invalid = {i.id for i in form.query(Input) if i.has_class("-invalid")}
        assert invalid == {"name", "size", "ttl"}
        assert with_pool.screen is form and started == []

        form.query_one("#name", Input).value = "batch"
        form.query_one("#size", Input).value = "3"
        form.query_one("#ttl", Input).value = "90"
        # Textual's Button ignores a click during its press effect (0.2 s after the last press, longer under
        # load): a person's second click would wait for it too.
        await wait_for(pilot, lambda: not form.query_one("#up", Button).has_class("-active"))
        assert await pilot.click("#up")
        await wait_for(pilot, lambda: started)
        assert started == [("batch", "3", "c5ad.large", "90")]
        await wait_for(pilot, lambda: any("bringing up 3" in str(n.message) for n in with_pool._notifications))
        assert not isinstance(with_pool.screen, PoolUpScreen)
        await wait_for(pilot, lambda: "2 pool(s) up" in with_pool.screen.sub_title)
