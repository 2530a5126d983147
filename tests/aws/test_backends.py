"""The registry of backends: one list of names (domain.models.BACKENDS), each with its class and principal."""

from __future__ import annotations

import pytest

from fceval_tui.backends import backend_class
from fceval_tui.domain.models import BACKENDS
from fceval_tui.errors import ConfigError


@pytest.mark.parametrize("name", BACKENDS)
def test_every_backend_name_has_its_class(name):
    assert backend_class(name).name == name


def test_an_unknown_backend_is_a_config_error_listing_the_names():
    with pytest.raises(ConfigError) as info:
        backend_class("k8s")
    assert info.value.fix == "expected one of local, ec2, ecs, batch"


def test_cloud_backends_declare_the_service_their_role_is_passed_to():
    principals = {name: backend_class(name).compute_principal for name in BACKENDS}
    assert principals == {
        "local": None,
        "ec2": "ec2.amazonaws.com",
        "ecs": "ecs-tasks.amazonaws.com",
        "batch": "ecs-tasks.amazonaws.com",  # a Batch job's role is assumed by its container, an ECS task
    }
