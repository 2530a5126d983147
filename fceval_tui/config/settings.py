"""The settings, declared once as the typed fields of `Settings`.

Each field carries its variable, parser, default, documentation and example as metadata; `SETTINGS`,
`.env.template`, CLI help suffixes and the ledger's JSON are derived from those fields. FC-Eval's
variable names are kept as they are; new ones are FCEVAL_*.
"""

from __future__ import annotations

import dataclasses
import functools
import shlex
import sys
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fceval_tui import locations
from fceval_tui.config.parsers import (
    AVAILABILITY_ZONE,
    Parser,
    any_text,
    aws_id,
    boolean,
    bucket,
    choice,
    comma_list,
    command_prefix,
    command_template,
    int_range,
    local_or_s3_prefix,
    optional,
    pattern,
    positive_float,
)
from fceval_tui.domain.models import BACKENDS
from fceval_tui.domain.template import CommandTemplate
from fceval_tui.package_data import example_harness

POOL_NAME = r"[a-z0-9][a-z0-9-]{0,31}"  # goes into tags, launch tokens and the console's views


def _default_run_command() -> str:
    harness = shlex.join([sys.executable, str(example_harness())])
    return harness + " agent --agent {agent} --task-id {task_id} --model {model} --out {artifacts_dir}"


def _default_grade_command() -> str:
    harness = shlex.join([sys.executable, str(example_harness())])
    return harness + " grade --task-id {task_id} --out {artifacts_dir}"


@dataclass(frozen=True)
class Setting:
    """What one settings field carries besides its value: its variable, parser, default and documentation."""

    env: str
    parse: Parser
    default: Any  # a value, or a function returning raw text that is parsed like any other source
    doc: str
    example: str
    group: str = "general"  # the .env.template section: general, aws, ecs or batch
    shown: str = ""  # how a computed or derived default is described
    attr: str = ""  # the field's name, filled in from the dataclass

    def default_value(self) -> Any:
        return self.parse(self.env, self.default()) if callable(self.default) else self.default

    def shown_default(self) -> str:
        """The default as documented; empty when there is none."""
        if self.shown:
            return self.shown
        if isinstance(self.default, bool):
            return str(self.default).lower()
        if isinstance(self.default, tuple):
            return ",".join(self.default)
        return "" if self.default is None else str(self.default)


def _setting(
    env: str, parse: Parser, default: Any, doc: str, example: str, group: str = "general", shown: str = ""
) -> Any:
    return field(metadata={"setting": Setting(env, parse, default, doc, example, group, shown)})


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting as a typed field, with where it came from. Build it with `load_settings`."""

    backend: str = _setting(
        "FCEVAL_BACKEND", choice(*BACKENDS), "local", "Where jobs run: local tmux, ec2, ecs or batch.", "local"
    )
    concurrent: int = _setting("FCEVAL_CONCURRENT", int_range(1, 1000), 4, "Jobs running at the same time.", "15")
    job_timeout_minutes: float = _setting(
        "FCEVAL_JOB_TIMEOUT_MINUTES",
        positive_float,
        60.0,
        "Per-job time limit; a job past it ends as timed_out.",
        "90",
    )
    ttl_minutes: float = _setting(
        "FCEVAL_TTL_MINUTES",
        positive_float,
        180.0,
        "Hard lifetime of any cloud resource (dead-man's switch), enforced remotely.",
        "240",
    )
    max_attempts: int = _setting(
        "FCEVAL_MAX_ATTEMPTS",
        int_range(1, 20),
        3,
        "Attempts per job for transient errors (capacity, throttling, lost session).",
        "3",
    )
    run_command: CommandTemplate = _setting(
        "FCEVAL_RUN_COMMAND",
        command_template,
        _default_run_command,
        "Agent step. Placeholders: {agent} {task_id} {model} {dataset} {run_id} {job_id} {artifacts_dir}; "
        "values are shell-quoted.",
        "fceval run --agent {agent} --task-id {task_id} --model {model} --output {artifacts_dir}",
        shown="the bundled example harness (examples/harness.py agent ...)",
    )
    grade_command: CommandTemplate | None = _setting(
        "FCEVAL_GRADE_COMMAND",
        optional(command_template),
        _default_grade_command,
        "Grading step, run after a successful agent step (same placeholders). Empty: no grading step.",
        "fceval grade --task-id {task_id} --run-dir {artifacts_dir}",
        shown="the bundled example harness (examples/harness.py grade ...)",
    )
    agent: str = _setting("FCEVAL_AGENT", any_text, "", "Agent used with --task-id when --agent is not given.", "aide")
    model: str = _setting("FCEVAL_MODEL", any_text, "", "Model used when a job line has none.", "gpt-4o")
    dataset: str = _setting(
        "FCEVAL_DATASET", any_text, "", "Dataset passed to the harness as {dataset}.", "formulacode"
    )
    artifacts: str | None = _setting(
        "FCEVAL_ARTIFACTS",
        optional(local_or_s3_prefix),
        None,
        "Artifact prefix: a local directory or s3://bucket/prefix.",
        "s3://my-results/fceval",
        shown="<state dir>/artifacts",
    )
    keep_sessions: bool = _setting(
        "FCEVAL_KEEP_SESSIONS", boolean, False, "Keep a job's tmux session after it ends (for inspection).", "false"
    )
    theme: str = _setting("FCEVAL_THEME", any_text, "fceval-dark", "Console theme name.", "fceval-light")
    aws_command_prefix: tuple[str, ...] = _setting(
        "FCEVAL_AWS_COMMAND_PREFIX",
        command_prefix,
        (),
        "Words put before every `aws` CLI call (interactive sessions).",
        "aws-vault exec myprofile --",
    )
    # FC-Eval's names, kept as they are.
    region: str = _setting(
        "AWS_REGION",
        pattern(r"[a-z]{2}(-[a-z]+)+-\d", "a region such as us-east-1"),
        "us-east-1",
        "AWS region.",
        "us-east-1",
        group="aws",
    )
    profile: str = _setting(
        "AWS_PROFILE", any_text, "", "AWS profile (SSO profiles work); empty: default chain.", "eval", group="aws"
    )
    ec2_instance_type: str = _setting(
        "EC2_INSTANCE_TYPE",
        pattern(r"[a-z][a-z0-9-]*\.[a-z0-9]+", "an instance type such as c5ad.large"),
        "c5ad.large",
        "EC2 instance type.",
        "c5ad.large",
        group="aws",
    )
    ec2_use_nvme: bool = _setting(
        "EC2_USE_NVME_STORAGE",
        boolean,
        True,
        "Format and mount the NVMe instance store for the work directory.",
        "true",
        group="aws",
    )
    ec2_root_volume_gb: int = _setting(
        "EC2_ROOT_VOLUME_SIZE", int_range(8, 16384), 50, "Root EBS volume size (GB).", "50", group="aws"
    )
    ec2_ami: str | None = _setting(
        "EC2_INSTANCE_AMI",
        optional(aws_id("ami")),
        None,
        "AMI id; empty: latest Amazon Linux 2023 from the public SSM parameter.",
        "ami-0123456789abcdef0",
        group="aws",
    )
    ec2_zones: tuple[str, ...] = _setting(
        "EC2_AVAILABILITY_ZONES",
        comma_list(AVAILABILITY_ZONE),
        (),
        "Zones tried in turn on capacity errors; empty: any zone.",
        "us-east-1a,us-east-1b",
        group="aws",
    )
    spot_price: float | None = _setting(
        "SPOT_PRICE",
        optional(positive_float),
        None,
        "Maximum spot price per hour (USD); empty: on-demand.",
        "0.10",
        group="aws",
    )
    staging_bucket: str | None = _setting(
        "FC_EVAL_S3_BUCKET",
        optional(bucket),
        None,
        "S3 staging bucket (required by the cloud backends).",
        "my-fceval-staging",
        group="aws",
    )
    snapshots_bucket: str | None = _setting(
        "S3_EVALUATION_SNAPSHOTS_BUCKET_NAME",
        optional(bucket),
        None,
        "Optional bucket for evaluation snapshots.",
        "my-fceval-snapshots",
        group="aws",
    )
    results_bucket: str | None = _setting(
        "S3_BUCKET_NAME",
        optional(bucket),
        None,
        "Optional results bucket (used for artifacts when FCEVAL_ARTIFACTS is unset on cloud backends).",
        "my-fceval-results",
        group="aws",
    )
    instance_profile: str = _setting(
        "FCEVAL_INSTANCE_PROFILE",
        pattern(r"[\w+=,.@-]{1,128}", "an instance profile name"),
        "datasmith-batch-execution-role",
        "EC2 instance profile given to job instances.",
        "datasmith-batch-execution-role",
        group="aws",
    )
    ec2_subnet: str | None = _setting(
        "FCEVAL_EC2_SUBNET_ID",
        optional(aws_id("subnet")),
        None,
        "Subnet for EC2 jobs; empty: the default VPC.",
        "subnet-0123456789abcdef0",
        group="aws",
    )
    remote_work_dir: str = _setting(
        "FCEVAL_REMOTE_WORK_DIR",
        pattern(r"/[\w./-]*", "an absolute path such as /fceval"),
        "/fceval",
        "Work directory on cloud compute (EC2 instance, ECS container, Batch job); jobs get a subdirectory.",
        "/fceval",
        group="aws",
    )
    pool: str | None = _setting(
        "FCEVAL_POOL",
        optional(pattern(POOL_NAME, "a pool name: lowercase letters, digits and '-', at most 32")),
        None,
        "Warm EC2 pool (`fceval-tui pool up`) whose ready instances run the jobs; empty: a new instance per job.",
        "default",
        group="aws",
    )
    pool_vcpus_per_job: int = _setting(
        "FCEVAL_POOL_VCPUS_PER_JOB",
        int_range(1, 448),
        2,
        "vCPUs per job on a pool instance: it runs its vCPUs / this many jobs at once (at least one).",
        "4",
        group="aws",
    )
    pool_idle_minutes: float = _setting(
        "FCEVAL_POOL_IDLE_MINUTES",
        positive_float,
        30.0,
        "A pool instance without jobs for this long ends itself (its dead-man's switch), so an unused pool "
        "stops billing.",
        "20",
        group="aws",
    )
    ecs_cluster: str = _setting(
        "FCEVAL_ECS_CLUSTER", any_text, "fceval", "ECS cluster for Fargate jobs.", "fceval", group="ecs"
    )
    ecs_image: str = _setting(
        "FCEVAL_ECS_IMAGE",
        any_text,
        "",
        "Container image template for Fargate jobs ({task_id} allowed).",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/tasks:{task_id}",
        group="ecs",
    )
    ecs_subnets: tuple[str, ...] = _setting(
        "FCEVAL_ECS_SUBNETS",
        comma_list(aws_id("subnet")),
        (),
        "Subnets for Fargate tasks.",
        "subnet-0123456789abcdef0",
        group="ecs",
    )
    ecs_security_groups: tuple[str, ...] = _setting(
        "FCEVAL_ECS_SECURITY_GROUPS",
        comma_list(aws_id("sg")),
        (),
        "Security groups for Fargate tasks.",
        "sg-0123456789abcdef0",
        group="ecs",
    )
    ecs_public_ip: bool = _setting(
        "FCEVAL_ECS_ASSIGN_PUBLIC_IP", boolean, False, "Give Fargate tasks a public IP.", "false", group="ecs"
    )
    ecs_cpu: int = _setting(
        "FCEVAL_ECS_CPU", int_range(256, 16384), 2048, "Fargate task CPU units.", "2048", group="ecs"
    )
    ecs_memory: int = _setting(
        "FCEVAL_ECS_MEMORY", int_range(512, 122880), 8192, "Fargate task memory (MiB).", "8192", group="ecs"
    )
    ecs_task_role_arn: str = _setting(
        "FCEVAL_ECS_TASK_ROLE_ARN",
        any_text,
        "",
        "Task role (needs ssmmessages:* for ECS Exec).",
        "arn:aws:iam::123456789012:role/fceval-task",
        group="ecs",
    )
    ecs_execution_role_arn: str = _setting(
        "FCEVAL_ECS_EXECUTION_ROLE_ARN",
        any_text,
        "",
        "Task execution role.",
        "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        group="ecs",
    )
    ecs_log_group: str = _setting(
        "FCEVAL_ECS_LOG_GROUP",
        any_text,
        "",
        "Existing CloudWatch log group for the tasks' output (the awslogs driver; needs the execution role, "
        "with logs:CreateLogStream and logs:PutLogEvents): a failed upload's verdict then says why. "
        "Empty: no logs.",
        "/ecs/fceval-tui",
        group="ecs",
    )
    batch_queue: str = _setting(
        "FCEVAL_BATCH_QUEUE", any_text, "", "AWS Batch job queue.", "fceval-queue", group="batch"
    )
    batch_job_definition: str = _setting(
        "FCEVAL_BATCH_JOB_DEFINITION", any_text, "", "AWS Batch job definition.", "fceval-job", group="batch"
    )
    batch_vcpu: int = _setting("FCEVAL_BATCH_VCPU", int_range(1, 256), 2, "vCPUs per Batch job.", "2", group="batch")
    batch_memory: int = _setting(
        "FCEVAL_BATCH_MEMORY", int_range(128, 1_000_000), 4096, "Memory per Batch job (MiB).", "4096", group="batch"
    )
    batch_gpus: int = _setting("FCEVAL_BATCH_GPUS", int_range(0, 16), 0, "GPUs per Batch job.", "0", group="batch")
    batch_retry_attempts: int = _setting(
        "FCEVAL_BATCH_RETRY_ATTEMPTS", int_range(1, 10), 1, "Batch-side retry attempts.", "1", group="batch"
    )
    batch_log_group: str = _setting(
        "FCEVAL_BATCH_LOG_GROUP",
        any_text,
        "/aws/batch/job",
        "CloudWatch log group of Batch jobs.",
        "/aws/batch/job",
        group="batch",
    )

    state_dir: Path
    env_file: Path | None = None
    sources: Mapping[str, str] = field(default_factory=dict)  # attr -> command line, environment, .env path...

    @property
    def artifact_prefix(self) -> str:
        return self.artifacts or str(locations.local_artifacts_dir(self.state_dir))

    def with_raw(self, raw: Mapping[str, str]) -> Settings:
        """Apply user-typed values (attr -> text), parsed and checked exactly as on the command line."""
        return self.replace(**{attr: setting(attr).parse(setting(attr).env, text) for attr, text in raw.items()})

    def replace(self, **overrides: Any) -> Settings:
        unknown = [attr for attr in overrides if attr not in _BY_ATTR]
        if unknown:
            raise KeyError(unknown[0])
        return dataclasses.replace(self, **overrides, sources={**self.sources, **dict.fromkeys(overrides, "override")})

    def to_json(self) -> dict[str, Any]:
        """Every setting's value as JSON (commands as their text, tuples as lists): what the ledger keeps
        with a run, so that resume, retry and cancel act with the settings it was launched with."""
        return {s.attr: _to_json(getattr(self, s.attr)) for s in SETTINGS}

    def with_json(self, data: Mapping[str, Any]) -> Settings:
        """These settings with the values `to_json` kept; names no longer known are skipped."""
        return self.replace(**{attr: _from_json(attr, value) for attr, value in data.items() if attr in _BY_ATTR})


SETTINGS: tuple[Setting, ...] = tuple(
    dataclasses.replace(f.metadata["setting"], attr=f.name) for f in fields(Settings) if "setting" in f.metadata
)
_BY_ATTR = {s.attr: s for s in SETTINGS}
_BY_ENV = {s.env: s for s in SETTINGS}


def setting(attr: str) -> Setting:
    """The declaration of the settings field `attr`; KeyError if there is none."""
    return _BY_ATTR[attr]


def setting_for_env(env: str) -> Setting:
    """The declaration of the setting read from variable `env`; KeyError if there is none."""
    return _BY_ENV[env]


def help_suffix(attr: str) -> str:
    """The end of a command-line option's help text, e.g. `env FCEVAL_CONCURRENT; default 4`."""
    s = setting(attr)
    default = s.shown_default()
    return f"env {s.env}; default {default}" if default else f"env {s.env}"


def _to_json(value: Any) -> Any:
    if isinstance(value, CommandTemplate):
        return value.text
    return list(value) if isinstance(value, tuple) else value


@functools.cache
def _template_fields() -> frozenset[str]:
    hints = typing.get_type_hints(Settings)
    return frozenset(
        s.attr
        for s in SETTINGS
        if hints[s.attr] is CommandTemplate or CommandTemplate in typing.get_args(hints[s.attr])
    )


def _from_json(attr: str, value: Any) -> Any:
    if attr in _template_fields():
        return CommandTemplate(setting(attr).env, value) if value else None
    return tuple(value) if isinstance(value, list) else value


def is_known_env(env: str) -> bool:
    return env in _BY_ENV
