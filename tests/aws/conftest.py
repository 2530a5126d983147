"""Fixtures of the warm pool tests (test_pool*.py)."""

from __future__ import annotations

import secrets

import pytest

from fceval_tui.ledger import Ledger
from tests.helpers.pools import harness


@pytest.fixture
def pool_env(aws_settings, ec2_machine, ssm_sessions):
    """Settings for a pool on the double's machine, a ledger, and a fresh pool name (the moto server is shared)."""

    def make(**env: str):
        values = {
            "FCEVAL_REMOTE_WORK_DIR": ec2_machine.work_root,
            "FCEVAL_RUN_COMMAND": harness("agent"),
            "FCEVAL_GRADE_COMMAND": harness("grade"),
            "EC2_USE_NVME_STORAGE": "false",
            "FCEVAL_POOL_VCPUS_PER_JOB": "256",  # one job per instance, whatever this machine's cores
        }
        values.update(env)
        return aws_settings(**values)

    settings = make()
    ledger = Ledger.open(settings.state_dir)
    yield make, ledger, f"p{secrets.token_hex(3)}"
    ledger.close()
