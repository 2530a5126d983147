import dataclasses
import json
import re
import types
import typing

import pytest

from fceval_tui.config import (
    SETTINGS,
    Settings,
    help_suffix,
    load_settings,
    setting,
    setting_for_env,
)
from fceval_tui.config.env_template import render_env_template
from fceval_tui.domain.models import BACKENDS
from fceval_tui.errors import ConfigError
from tests.helpers.cli import REPO


def test_precedence_cli_over_env_over_dotenv_over_default(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("FCEVAL_CONCURRENT=3\nEC2_INSTANCE_TYPE=m5.large\nFCEVAL_MAX_ATTEMPTS=5\n")
    s = load_settings(
        cli={"concurrent": "9"},
        env_file=env_file,
        environ={"FCEVAL_CONCURRENT": "7", "EC2_INSTANCE_TYPE": "c5.xlarge"},
        state_dir=tmp_path,
    )
    assert s.concurrent == 9 and s.sources["concurrent"] == "command line"
    assert s.ec2_instance_type == "c5.xlarge" and s.sources["ec2_instance_type"] == "environment"
    assert s.max_attempts == 5 and s.sources["max_attempts"] == str(env_file)
    assert s.ec2_root_volume_gb == 50 and s.sources["ec2_root_volume_gb"] == "default"
    assert s.instance_profile == "datasmith-batch-execution-role"
    assert s.ec2_instance_type != "" and s.backend == "local"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"FCEVAL_CONCURRENT": "-1"}, r"FCEVAL_CONCURRENT='-1' is out of range \(fix: expected an integer >= 1"),
        ({"FCEVAL_BACKEND": "k8s"}, r"FCEVAL_BACKEND='k8s' is not a known value \(fix: expected one of local, ec2"),
        ({"FC_EVAL_S3_BUCKET": "My_Bucket"}, r"FC_EVAL_S3_BUCKET='My_Bucket' is not a valid S3 bucket name"),
        ({"FCEVAL_RUN_COMMAND": "x {nope}"}, r"unknown placeholder \{nope\}"),
        ({"EC2_USE_NVME_STORAGE": "maybe"}, r"EC2_USE_NVME_STORAGE='maybe' is not a boolean"),
        ({"SPOT_PRICE": "free"}, r"SPOT_PRICE='free' is not a number"),
        ({"EC2_AVAILABILITY_ZONES": "us-east-1a,nowhere"}, r"EC2_AVAILABILITY_ZONES='nowhere' is malformed"),
    ],
)
def test_bad_values_name_variable_value_and_form(tmp_path, env, message):
    with pytest.raises(ConfigError, match=message):
        load_settings(environ=env, state_dir=tmp_path)


def test_env_file_that_does_not_parse(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("FCEVAL_CONCURRENT=2\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"\.env:2: cannot parse 'this is not a setting'"):
        load_settings(env_file=env_file, environ={}, state_dir=tmp_path)


def test_unknown_fceval_variable_in_env_file(tmp_path):
    env_file = tmp_path / ".env"
    env_file.write_text("FCEVAL_CONCURENT=2\n")
    with pytest.raises(ConfigError, match="unknown variable FCEVAL_CONCURENT"):
        load_settings(env_file=env_file, environ={}, state_dir=tmp_path)


def test_env_template_documents_every_setting_with_its_default():
    template = (REPO / ".env.template").read_text()
    assert template == render_env_template(), "regenerate: python -m fceval_tui.config.env_template > .env.template"
    documented = set(re.findall(r"^# ([A-Z][A-Z0-9_]+)=", template, flags=re.M))
    assert {s.env for s in SETTINGS} | {"FCEVAL_STATE_DIR"} == documented


def test_every_documented_example_is_a_valid_value(tmp_path):
    uncommented = "\n".join(line[2:] for line in render_env_template().splitlines() if re.match(r"# [A-Z_0-9]+=", line))
    env_file = tmp_path / ".env"
    env_file.write_text(uncommented + "\n")
    settings = load_settings(env_file=env_file, environ={}, state_dir=tmp_path)
    assert settings.sources["concurrent"] == str(env_file)
    assert settings.concurrent == 15


def test_every_settings_field_declares_its_variable_doc_and_example():
    settings_fields = [f for f in dataclasses.fields(Settings) if f.name not in ("state_dir", "env_file", "sources")]
    assert [f.name for f in settings_fields] == [s.attr for s in SETTINGS]
    for f in settings_fields:
        declared = f.metadata["setting"]
        assert declared.env and declared.doc.endswith(".") and declared.example, f.name
        assert declared.group in ("general", "aws", "ecs", "batch"), f.name
    assert len({s.env for s in SETTINGS}) == len(SETTINGS)


def test_defaults_have_the_declared_field_types(tmp_path):
    hints = typing.get_type_hints(Settings)
    defaults = load_settings(environ={}, state_dir=tmp_path)
    for s in SETTINGS:
        value, hint = getattr(defaults, s.attr), hints[s.attr]
        members = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        allowed = tuple(typing.get_origin(t) or t for t in members)
        assert isinstance(value, allowed), (s.attr, value, hint)
        assert defaults.sources[s.attr] == "default"


def test_env_template_is_generated_from_the_field_metadata():
    lines = render_env_template().splitlines()
    for s in SETTINGS:
        i = lines.index(f"# {s.env}=" + (f"'{s.example}'" if any(c in s.example for c in " {}#'\"$") else s.example))
        assert lines[i - 1] == f"# {s.doc} Default: {s.shown_default() or '(empty)'}."


def test_backend_choices_are_the_registered_backends(tmp_path):
    for name in BACKENDS:
        assert load_settings(environ={"FCEVAL_BACKEND": name}, state_dir=tmp_path).backend == name
    with pytest.raises(ConfigError, match="expected one of " + ", ".join(BACKENDS)):
        setting("backend").parse("FCEVAL_BACKEND", "nowhere")


def test_help_suffix_names_the_variable_and_the_default():
    assert help_suffix("concurrent") == "env FCEVAL_CONCURRENT; default 4"
    assert help_suffix("backend") == "env FCEVAL_BACKEND; default local"
    assert help_suffix("keep_sessions") == "env FCEVAL_KEEP_SESSIONS; default false"
    assert help_suffix("artifacts") == "env FCEVAL_ARTIFACTS; default <state dir>/artifacts"
    assert help_suffix("agent") == "env FCEVAL_AGENT"
    assert setting_for_env("FCEVAL_CONCURRENT") is setting("concurrent")
    with pytest.raises(KeyError):
        help_suffix("concurency")


def test_settings_survive_the_ledgers_json(tmp_path):
    environ = {
        "FCEVAL_CONCURRENT": "12",
        "FCEVAL_JOB_TIMEOUT_MINUTES": "7.5",
        "FCEVAL_RUN_COMMAND": "run {task_id} --out {artifacts_dir}",
        "FCEVAL_GRADE_COMMAND": "",
        "FCEVAL_AWS_COMMAND_PREFIX": "aws-vault exec 'my profile' --",
        "EC2_AVAILABILITY_ZONES": "us-east-1a,us-east-1b",
        "SPOT_PRICE": "0.25",
        "FCEVAL_KEEP_SESSIONS": "true",
        "AWS_REGION": "eu-west-1",
    }
    launched = load_settings(environ=environ, state_dir=tmp_path)
    stored = json.loads(json.dumps(launched.to_json()))
    assert stored["run_command"] == "run {task_id} --out {artifacts_dir}" and stored["grade_command"] is None
    assert stored["ec2_zones"] == ["us-east-1a", "us-east-1b"]
    current = load_settings(environ={}, state_dir=tmp_path)
    restored = current.with_json({**stored, "a_setting_since_removed": 1})
    for s in SETTINGS:
        assert getattr(restored, s.attr) == getattr(launched, s.attr), s.attr
    assert restored.run_command.text == launched.run_command.text
    assert restored.run_command.variable == "FCEVAL_RUN_COMMAND"
    assert restored.aws_command_prefix == ("aws-vault", "exec", "my profile", "--")
    assert restored.sources["concurrent"] == "override" and restored.state_dir == current.state_dir


def test_replace_and_with_raw_check_the_names(tmp_path):
    base = load_settings(environ={}, state_dir=tmp_path)
    changed = base.with_raw({"concurrent": "9", "spot_price": ""})
    assert changed.concurrent == 9 and changed.spot_price is None and changed.sources["concurrent"] == "override"
    assert base.concurrent == 4
    with pytest.raises(ConfigError, match="FCEVAL_CONCURRENT='0' is out of range"):
        base.with_raw({"concurrent": "0"})
    with pytest.raises(KeyError):
        base.replace(state_dir=tmp_path / "elsewhere")
    assert base.artifact_prefix == str(tmp_path / "artifacts")
