"""What an EC2 attempt is billed at: the spot price in effect at its launch (moto's spot price history),
else its spot request's maximum price, else the on-demand table; a price that cannot be read is never
an error, and the fallback says why."""

from __future__ import annotations

import botocore.exceptions

from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.domain.prices import EC2_ON_DEMAND_USD_PER_HOUR, HourlyPrice, PriceSource
from tests.helpers.aws import client_error, declared, make_context, new_run_id, record_calls, run_with_runner, spec

MOTO_SPOT_PRICE = 0.00001  # what moto's DescribeSpotPriceHistory reports for every type and zone


def _launched(aws_settings, **env):
    settings = aws_settings(**env)
    backend = Ec2Backend(settings)
    ctx = make_context(settings, new_run_id())
    return backend, ctx, backend.provision(ctx)


def _deny(backend, operation: str) -> None:
    def denied(**_):
        raise client_error("UnauthorizedOperation", "You are not authorized to perform this operation.", operation)

    backend.aws.ec2.meta.events.register(f"before-call.ec2.{operation}", denied)


def _with_spot_request(backend, request_id: str) -> None:
    """AWS gives a spot launch's instance its request's id (EC2 API reference, Instance:
    SpotInstanceRequestId); moto leaves it out."""

    def add(parsed, **_):
        for reservation in parsed.get("Reservations", []):
            for item in reservation["Instances"]:
                item["SpotInstanceRequestId"] = request_id

    backend.aws.ec2.meta.events.register("after-call.ec2.DescribeInstances", add)


def test_a_spot_attempt_is_priced_at_the_spot_price_for_its_type_and_zone_at_launch(aws_settings, aws_env):
    backend, ctx, instance_id = _launched(aws_settings, SPOT_PRICE="0.05", EC2_AVAILABILITY_ZONES="us-east-1b")
    calls = record_calls([backend.aws.ec2])
    try:
        assert backend.attempt_price(ctx, instance_id) == HourlyPrice(MOTO_SPOT_PRICE, PriceSource.SPOT_HISTORY)
        (item,) = aws_env.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
        (asked,) = calls.named("DescribeSpotPriceHistory")
        assert asked["InstanceTypes"] == [backend.settings.ec2_instance_type]
        assert asked["AvailabilityZone"] == "us-east-1b"
        assert asked["StartTime"] == asked["EndTime"] == item["LaunchTime"]
    finally:
        backend.cleanup(ctx, instance_id)


def test_without_the_history_the_spot_requests_price_then_the_table_is_used_and_says_why(aws_settings, aws_env):
    backend, ctx, instance_id = _launched(aws_settings, SPOT_PRICE="0.05")
    try:
        _deny(backend, "DescribeSpotPriceHistory")
        table = min(EC2_ON_DEMAND_USD_PER_HOUR[backend.settings.ec2_instance_type], 0.05)
        assert backend.attempt_price(ctx, instance_id) == HourlyPrice(
            table, PriceSource.ON_DEMAND_TABLE, "spot price history: UnauthorizedOperation"
        )
        ec2 = aws_env.client("ec2")
        image = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"][0]["ImageId"]
        request = ec2.request_spot_instances(
            SpotPrice="0.07", LaunchSpecification={"ImageId": image, "InstanceType": "t3.medium"}
        )["SpotInstanceRequests"][0]
        _with_spot_request(backend, request["SpotInstanceRequestId"])
        assert backend.attempt_price(ctx, instance_id) == HourlyPrice(
            0.07, PriceSource.SPOT_REQUEST, "spot price history: UnauthorizedOperation"
        )
        ec2.terminate_instances(InstanceIds=[request["InstanceId"]])
    finally:
        backend.cleanup(ctx, instance_id)


def test_an_unreachable_ec2_or_an_on_demand_launch_is_priced_from_the_table(aws_settings, aws_env):
    backend, ctx, instance_id = _launched(aws_settings)
    calls = record_calls([backend.aws.ec2])
    try:
        expected = EC2_ON_DEMAND_USD_PER_HOUR[backend.settings.ec2_instance_type]
        assert backend.attempt_price(ctx, instance_id) == HourlyPrice(expected, PriceSource.ON_DEMAND_TABLE)
        assert calls.operations() == set()  # on-demand: nothing to ask
    finally:
        backend.cleanup(ctx, instance_id)
    backend, ctx, instance_id = _launched(aws_settings, SPOT_PRICE="0.02")
    try:

        def unreachable(**_):
            raise botocore.exceptions.EndpointConnectionError(endpoint_url="https://ec2.us-east-1.amazonaws.com")

        backend.aws.ec2.meta.events.register("before-call.ec2.DescribeInstances", unreachable)
        price = backend.attempt_price(ctx, instance_id)
        assert (price.usd, price.source) == (0.02, PriceSource.ON_DEMAND_TABLE)
        assert price.note == f"cannot describe {instance_id}: EndpointConnectionError"
        backend.aws.ec2.meta.events.unregister("before-call.ec2.DescribeInstances", unreachable)
    finally:
        backend.cleanup(ctx, instance_id)


def test_the_runner_bills_a_spot_attempt_at_its_launch_price_and_says_so(aws_settings, ssm_agent, aws_env):
    from fceval_tui.ledger import Ledger

    settings = aws_settings(SPOT_PRICE="0.05", FCEVAL_BACKEND="ec2")
    backend = Ec2Backend(settings)
    backend.poll_interval = 0.05
    calls = record_calls(backend.aws.all())
    run, final = run_with_runner(settings, backend, [spec("hello")])
    ledger = Ledger.open(settings.state_dir)
    try:
        (attempt,) = ledger.run_attempt_costs(run.id)
        (event,) = [e for e in ledger.events(run_id=run.id) if e.kind == "attempt_price"]
    finally:
        ledger.close()
    assert (attempt.hourly_usd, attempt.price_source) == (MOTO_SPOT_PRICE, PriceSource.SPOT_HISTORY)
    hours = (attempt.billed_until - attempt.started_at).total_seconds() / 3600
    assert final["hello"].cost_usd == attempt.cost_usd == round(MOTO_SPOT_PRICE * hours, 6)
    assert event.detail == {"attempt": 1, "hourly_usd": MOTO_SPOT_PRICE, "source": "spot price at launch"}
    called, undeclared = declared(Ec2Backend, calls)
    assert not undeclared and "ec2:DescribeSpotPriceHistory" in called


def test_the_resources_listing_prices_a_spot_instance_at_the_price_its_attempt_paid(aws_settings, aws_env, tmp_path):
    """`fceval-tui resources` and the Resources view: cost so far at the recorded spot price, not the table."""
    import dataclasses
    from datetime import timedelta

    from fceval_tui.domain.models import JobSpec
    from fceval_tui.ledger import Ledger
    from fceval_tui.services.resources import list_resources

    backend, ctx, instance_id = _launched(aws_settings, SPOT_PRICE="0.05")
    ledger = Ledger.open(backend.settings.state_dir)
    try:
        run, (job,) = ledger.create_run("ec2", 1, [JobSpec("aide", "hello", "", "")], run_id=ctx.job.run_id)
        assert job.id == ctx.job.id
        ledger.update(job.id, resource_id=instance_id, attempts=1)
        (item,) = aws_env.client("ec2").describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
        two_hours_later = item["LaunchTime"] + timedelta(hours=2)

        def mine(listing):
            (found,) = [r for r in listing.resources if r.id == instance_id]
            (shown,) = [r for r in listing.to_json()["resources"] if r["id"] == instance_id]
            return found, shown

        # No price recorded yet: the backend's own (table) estimate, as before.
        found, shown = mine(list_resources(backend.settings, ledger, now=two_hours_later))
        assert shown["price_source"] is None and shown["hourly_usd"] is None and found.cost_usd < 0.0123
        ledger.set_attempt_price(job.id, 1, HourlyPrice(0.0123, PriceSource.SPOT_HISTORY))
        found, shown = mine(list_resources(backend.settings, ledger, now=two_hours_later))
        assert found.cost_usd == round(2 * 0.0123, 6) == shown["cost_usd"]
        assert shown["price_source"] == "spot price at launch" and shown["hourly_usd"] == 0.0123
        # The instance of an earlier attempt is not billed at the current attempt's price.
        ledger.update(job.id, resource_id="i-0another", attempts=2)
        found, shown = mine(list_resources(backend.settings, ledger, now=two_hours_later))
        assert shown["price_source"] is None and found.cost_usd < 0.0123
        assert dataclasses.asdict(found)["job_id"] == job.id
    finally:
        ledger.close()
        backend.cleanup(ctx, instance_id)
