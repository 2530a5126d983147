"""The hourly price an EC2 attempt is billed at: for a spot instance, the spot price in effect for its
type and zone when it launched (DescribeSpotPriceHistory), else its spot request's maximum price;
otherwise, or when neither can be read, the on-demand table in domain.prices (capped by SPOT_PRICE for
spot). Never raises: a price that cannot be read is a fallback with a note saying why."""

from __future__ import annotations

from fceval_tui.backends.aws import AWS_ERRORS, error_code
from fceval_tui.domain.prices import HourlyPrice, PriceSource, ec2_hourly, price_in_effect

# DescribeSpotPriceHistory's product descriptions for Linux; instances in a VPC report either one
# (AWS: "Spot Instance pricing history", ProductDescriptions).
LINUX = ("Linux/UNIX", "Linux/UNIX (Amazon VPC)")
ACTIONS = ("ec2:DescribeSpotPriceHistory", "ec2:DescribeSpotInstanceRequests")


def launch_price(ec2, instance_id: str, instance_type: str, max_price: float | None) -> HourlyPrice:
    """`max_price` is SPOT_PRICE (None: an on-demand launch, priced from the table without a call)."""
    table = HourlyPrice(ec2_hourly(instance_type, max_price), PriceSource.ON_DEMAND_TABLE)
    if max_price is None:
        return table
    try:
        reservations = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"]
    except AWS_ERRORS as exc:
        return _fallback(table, f"cannot describe {instance_id}: {_why(exc)}")
    instances = [item for r in reservations for item in r["Instances"]]
    if not instances or instances[0].get("InstanceLifecycle") != "spot":
        return table  # launched on-demand after all
    item = instances[0]
    try:
        price = _history_price(ec2, item)
    except AWS_ERRORS as exc:
        price, notes = None, [f"spot price history: {_why(exc)}"]
    else:
        notes = ["no spot price history at launch"]
    if price is not None:
        return HourlyPrice(price, PriceSource.SPOT_HISTORY)
    request = item.get("SpotInstanceRequestId")
    if request:
        try:
            (found,) = ec2.describe_spot_instance_requests(SpotInstanceRequestIds=[request])["SpotInstanceRequests"]
            return HourlyPrice(float(found["SpotPrice"]), PriceSource.SPOT_REQUEST, "; ".join(notes))
        except AWS_ERRORS as exc:
            notes.append(f"spot request {request}: {_why(exc)}")
        except (KeyError, ValueError):
            notes.append(f"spot request {request} has no price")
    return _fallback(table, "; ".join(notes))


def _history_price(ec2, item: dict) -> float | None:
    launched = item["LaunchTime"]
    zone = item.get("Placement", {}).get("AvailabilityZone")
    params = {
        "InstanceTypes": [item["InstanceType"]],
        "ProductDescriptions": list(LINUX),
        "StartTime": launched,
        "EndTime": launched,
    }
    if zone:
        params["AvailabilityZone"] = zone
    history = [
        (entry["Timestamp"], float(entry["SpotPrice"]))
        for page in ec2.get_paginator("describe_spot_price_history").paginate(**params)
        for entry in page["SpotPriceHistory"]
        if not zone or entry.get("AvailabilityZone") == zone
    ]
    return price_in_effect(history, launched)


def _fallback(table: HourlyPrice, note: str) -> HourlyPrice:
    return HourlyPrice(table.usd, table.source, note)


def _why(exc: BaseException) -> str:
    return error_code(exc) or type(exc).__name__
