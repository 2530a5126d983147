import re
from pathlib import Path

import pytest

from fceval_tui.config import SETTINGS, load_settings, render_env_template
from fceval_tui.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent


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
    assert template == render_env_template(), "regenerate: python -m fceval_tui.config > .env.template"
    documented = set(re.findall(r"^# ([A-Z][A-Z0-9_]+)=", template, flags=re.M))
    assert {s.env for s in SETTINGS} | {"FCEVAL_STATE_DIR"} == documented


def test_every_documented_example_is_a_valid_value(tmp_path):
    uncommented = "\n".join(line[2:] for line in render_env_template().splitlines() if re.match(r"# [A-Z_0-9]+=", line))
    env_file = tmp_path / ".env"
    env_file.write_text(uncommented + "\n")
    settings = load_settings(env_file=env_file, environ={}, state_dir=tmp_path)
    assert settings.sources["concurrent"] == str(env_file)
    assert settings.concurrent == 15
