"""Approximate compute prices for "cost so far" in the console: a table and pure lookups.

These are rounded on-demand list prices for us-east-1 (Linux), in USD per hour, written down by
hand: the AWS Pricing API needs extra permissions, is slow, and the console only needs an order of
magnitude. Other regions typically cost 0-30% more. Spot instances are shown at the lower of the
on-demand price and SPOT_PRICE (an upper bound: the real spot price is usually lower) unless the
spot price paid is known (`PriceSource`). Unknown instance types have no price (None) rather than a
made-up one. No I/O here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

EC2_ON_DEMAND_USD_PER_HOUR: dict[str, float] = {
    "t3.medium": 0.0416,
    "t3.large": 0.0832,
    "t3.xlarge": 0.1664,
    "t3.2xlarge": 0.3328,
    "c5.large": 0.085,
    "c5.xlarge": 0.17,
    "c5.2xlarge": 0.34,
    "c5.4xlarge": 0.68,
    "c5ad.large": 0.086,
    "c5ad.xlarge": 0.172,
    "c5ad.2xlarge": 0.344,
    "c5ad.4xlarge": 0.688,
    "c5ad.8xlarge": 1.376,
    "c6i.large": 0.085,
    "c6i.xlarge": 0.17,
    "c6i.2xlarge": 0.34,
    "c6id.large": 0.1008,
    "c6id.2xlarge": 0.4032,
    "c6id.4xlarge": 0.8064,
    "c7g.large": 0.0725,
    "c7g.xlarge": 0.145,
    "m5.large": 0.096,
    "m5.xlarge": 0.192,
    "m5.2xlarge": 0.384,
    "m5.4xlarge": 0.768,
    "m5d.large": 0.113,
    "m5d.xlarge": 0.226,
    "m5d.2xlarge": 0.452,
    "m6i.large": 0.096,
    "m6i.xlarge": 0.192,
    "m6i.2xlarge": 0.384,
    "m6id.large": 0.1187,
    "m6id.xlarge": 0.2373,
    "m6id.2xlarge": 0.4746,
    "r5.large": 0.126,
    "r5.xlarge": 0.252,
    "r6i.large": 0.126,
    "g4dn.xlarge": 0.526,
    "g4dn.2xlarge": 0.752,
    "g4dn.4xlarge": 1.204,
    "g5.xlarge": 1.006,
    "g5.2xlarge": 1.212,
    "p3.2xlarge": 3.06,
}

# Fargate (Linux/x86) per vCPU-hour and per GB-hour; also used for Batch jobs, whose real price
# depends on the compute environment (EC2 or Fargate, on-demand or spot).
FARGATE_VCPU_HOUR = 0.04048
FARGATE_GB_HOUR = 0.004445


def ec2_hourly(instance_type: str, spot_max_price: float | None = None) -> float | None:
    price = EC2_ON_DEMAND_USD_PER_HOUR.get(instance_type)
    if spot_max_price is not None:
        return spot_max_price if price is None else min(price, spot_max_price)
    return price


def fargate_hourly(cpu_units: int, memory_mib: int) -> float:
    """ECS task sizes are in CPU units (1024 = 1 vCPU) and MiB."""
    return cpu_units / 1024 * FARGATE_VCPU_HOUR + memory_mib / 1024 * FARGATE_GB_HOUR


def batch_hourly(vcpus: float, memory_mib: int) -> float:
    return vcpus * FARGATE_VCPU_HOUR + memory_mib / 1024 * FARGATE_GB_HOUR


def cost_so_far(hourly: float | None, started_at: datetime | None, now: datetime) -> float:
    """USD spent since `started_at` at `hourly`; 0.0 when either is unknown."""
    if hourly is None or started_at is None:
        return 0.0
    hours = max(0.0, (now - started_at).total_seconds() / 3600)
    return round(hourly * hours, 4)


class PriceSource(StrEnum):
    """Where an attempt's hourly price came from, best first."""

    SPOT_HISTORY = "spot price at launch"  # DescribeSpotPriceHistory for its type and zone at launch
    SPOT_REQUEST = "spot request max price"  # the spot request's maximum: an upper bound
    ON_DEMAND_TABLE = "on-demand table"  # EC2_ON_DEMAND_USD_PER_HOUR (capped by SPOT_PRICE for spot)


@dataclass(frozen=True)
class HourlyPrice:
    usd: float | None
    source: PriceSource
    note: str = ""  # why a better source was not used


def price_in_effect(history: Iterable[tuple[datetime, float]], at: datetime) -> float | None:
    """The price in effect at `at`: the last change at or before it (AWS: DescribeSpotPriceHistory
    with a start time also returns the last change before it, the price in effect then)."""
    before = [(ts, price) for ts, price in history if ts <= at]
    return max(before)[1] if before else None
