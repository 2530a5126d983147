"""What a cloud backend refuses before anything is created: commands that exist only on this machine."""

from __future__ import annotations

import pytest

from fceval_tui.backends import backend_class
from fceval_tui.errors import ConfigError


@pytest.mark.parametrize("backend", ["ec2", "ecs", "batch"])
def test_the_bundled_grader_is_refused_when_only_the_run_command_is_set(aws_settings, backend):
    settings = aws_settings(FCEVAL_RUN_COMMAND="harness run {task_id}", FCEVAL_GRADE_COMMAND=None)
    with pytest.raises(ConfigError) as caught:
        backend_class(backend)(settings).check_ready()
    assert "FCEVAL_GRADE_COMMAND is not set" in caught.value.problem
    assert "empty value for no grade step" in caught.value.fix


@pytest.mark.parametrize("backend", ["ec2", "ecs", "batch"])
def test_an_empty_grade_command_means_no_grade_step_and_is_accepted(aws_settings, backend):
    settings = aws_settings(FCEVAL_RUN_COMMAND="harness run {task_id}", FCEVAL_GRADE_COMMAND="")
    assert settings.grade_command is None
    backend_class(backend)(settings).check_ready()
