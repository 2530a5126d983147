"""Settings: command line > environment > .env > defaults, declared once in SETTINGS.

FC-Eval's variable names are kept as they are; new ones are FCEVAL_*. `.env.template` documents
every entry of SETTINGS (a test keeps the two in step). A bad value stops with one line naming
the variable, the value and the expected form.
"""

from __future__ import annotations

import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fceval_tui.domain.models import BACKENDS
from fceval_tui.domain.template import CommandTemplate
from fceval_tui.errors import ConfigError, StateDirError
from fceval_tui.resources import example_harness

Parser = Callable[[str, str], Any]


def _int(minimum: int, maximum: int | None = None) -> Parser:
    def parse(name: str, raw: str) -> int:
        form = f"an integer >= {minimum}" + (f" and <= {maximum}" if maximum is not None else "")
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r} is not an integer", f"expected {form}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise ConfigError(f"{name}={raw!r} is out of range", f"expected {form}")
        return value

    return parse


def _positive_float(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number", "expected a positive number, e.g. 30") from None
    if not value > 0 or value != value or value == float("inf"):
        raise ConfigError(f"{name}={raw!r} must be positive", "expected a positive number, e.g. 30")
    return value


def _optional(parser: Parser) -> Parser:
    return lambda name, raw: parser(name, raw) if raw.strip() else None


def _text(name: str, raw: str) -> str:
    return raw


def _bool(name: str, raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean", "expected true or false")


def _choice(*choices: str) -> Parser:
    def parse(name: str, raw: str) -> str:
        if raw not in choices:
            raise ConfigError(f"{name}={raw!r} is not a known value", "expected one of " + ", ".join(choices))
        return raw

    return parse


def _pattern(regex: str, form: str) -> Parser:
    compiled = re.compile(regex)

    def parse(name: str, raw: str) -> str:
        if not compiled.fullmatch(raw):
            raise ConfigError(f"{name}={raw!r} is malformed", f"expected {form}")
        return raw

    return parse


_BUCKET = re.compile(r"(?!xn--)(?!.*\.\.)[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _bucket(name: str, raw: str) -> str:
    if not _BUCKET.fullmatch(raw) or re.fullmatch(r"\d+\.\d+\.\d+\.\d+", raw):
        raise ConfigError(
            f"{name}={raw!r} is not a valid S3 bucket name",
            "expected 3-63 lowercase letters, digits, dots or hyphens, e.g. my-fceval-staging",
        )
    return raw


def _prefix(name: str, raw: str) -> str:
    if raw.startswith("s3://"):
        bucket = raw[5:].split("/", 1)[0]
        _bucket(name, bucket)
        return raw.rstrip("/")
    if "://" in raw:
        raise ConfigError(
            f"{name}={raw!r} has an unsupported scheme", "expected a local directory or s3://bucket/prefix"
        )
    return str(Path(raw).expanduser())


def _list(item: Parser | None = None) -> Parser:
    def parse(name: str, raw: str) -> tuple[str, ...]:
        items = tuple(part.strip() for part in raw.split(",") if part.strip())
        return tuple(item(name, part) for part in items) if item else items

    return parse


def _template(name: str, raw: str) -> CommandTemplate:
    return CommandTemplate(name, raw)


def _command_prefix(name: str, raw: str) -> tuple[str, ...]:
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise ConfigError(f"{name}={raw!r} cannot be split into words ({exc})", "balance the quotes") from None


def _default_run_command() -> str:
    harness = shlex.join([sys.executable, str(example_harness())])
    return harness + " agent --agent {agent} --task-id {task_id} --model {model} --out {artifacts_dir}"


def _default_grade_command() -> str:
    harness = shlex.join([sys.executable, str(example_harness())])
    return harness + " grade --task-id {task_id} --out {artifacts_dir}"


@dataclass(frozen=True)
class Setting:
    env: str
    attr: str
    parse: Parser
    default: Any
    doc: str
    example: str = ""
    group: str = "general"

    def default_value(self) -> Any:
        # A computed default is raw text, parsed like any other source.
        return self.parse(self.env, self.default()) if callable(self.default) else self.default


_AZ = _pattern(r"[a-z]{2}(-[a-z]+)+-\d[a-z]", "an availability zone such as us-east-1a")
_AWS_ID = lambda prefix: _pattern(prefix + r"-[0-9a-f]{8,17}", f"an id like {prefix}-0123456789abcdef0")  # noqa: E731

SETTINGS: tuple[Setting, ...] = (
    Setting(
        "FCEVAL_BACKEND",
        "backend",
        _choice(*BACKENDS),
        "local",
        "Where jobs run: local tmux, ec2, ecs or batch.",
        "local",
    ),
    Setting("FCEVAL_CONCURRENT", "concurrent", _int(1, 1000), 4, "Jobs running at the same time.", "15"),
    Setting(
        "FCEVAL_JOB_TIMEOUT_MINUTES",
        "job_timeout_minutes",
        _positive_float,
        60.0,
        "Per-job time limit; a job past it ends as timed_out.",
        "90",
    ),
    Setting(
        "FCEVAL_TTL_MINUTES",
        "ttl_minutes",
        _positive_float,
        180.0,
        "Hard lifetime of any cloud resource (dead-man's switch), enforced remotely.",
        "240",
    ),
    Setting(
        "FCEVAL_MAX_ATTEMPTS",
        "max_attempts",
        _int(1, 20),
        3,
        "Attempts per job for transient errors (capacity, throttling, lost session).",
        "3",
    ),
    Setting(
        "FCEVAL_RUN_COMMAND",
        "run_command",
        _template,
        _default_run_command,
        "Agent step. Placeholders: {agent} {task_id} {model} {dataset} {run_id} {job_id} {artifacts_dir}; "
        "values are shell-quoted.",
        "fceval run --agent {agent} --task-id {task_id} --model {model} --output {artifacts_dir}",
    ),
    Setting(
        "FCEVAL_GRADE_COMMAND",
        "grade_command",
        _optional(_template),
        _default_grade_command,
        "Grading step, run after a successful agent step (same placeholders). Empty: no grading step.",
        "fceval grade --task-id {task_id} --run-dir {artifacts_dir}",
    ),
    Setting("FCEVAL_AGENT", "agent", _text, "", "Agent used with --task-id when --agent is not given.", "aide"),
    Setting("FCEVAL_MODEL", "model", _text, "", "Model used when a job line has none.", "gpt-4o"),
    Setting("FCEVAL_DATASET", "dataset", _text, "", "Dataset passed to the harness as {dataset}.", "formulacode"),
    Setting(
        "FCEVAL_ARTIFACTS",
        "artifacts",
        _optional(_prefix),
        None,
        "Artifact prefix: a local directory or s3://bucket/prefix.",
        "s3://my-results/fceval",
    ),
    Setting(
        "FCEVAL_KEEP_SESSIONS",
        "keep_sessions",
        _bool,
        False,
        "Keep a job's tmux session after it ends (for inspection).",
        "false",
    ),
    Setting("FCEVAL_THEME", "theme", _text, "fceval-dark", "Console theme name.", "fceval-light"),
    Setting(
        "FCEVAL_AWS_COMMAND_PREFIX",
        "aws_command_prefix",
        _command_prefix,
        (),
        "Words put before every `aws` CLI call (interactive sessions).",
        "aws-vault exec myprofile --",
    ),
    # FC-Eval's names, kept as they are.
    Setting(
        "AWS_REGION",
        "region",
        _pattern(r"[a-z]{2}(-[a-z]+)+-\d", "a region such as us-east-1"),
        "us-east-1",
        "AWS region.",
        "us-east-1",
        "aws",
    ),
    Setting(
        "AWS_PROFILE", "profile", _text, "", "AWS profile (SSO profiles work); empty: default chain.", "eval", "aws"
    ),
    Setting(
        "EC2_INSTANCE_TYPE",
        "ec2_instance_type",
        _pattern(r"[a-z][a-z0-9-]*\.[a-z0-9]+", "an instance type such as c5ad.large"),
        "c5ad.large",
        "EC2 instance type.",
        "c5ad.large",
        "aws",
    ),
    Setting(
        "EC2_USE_NVME_STORAGE",
        "ec2_use_nvme",
        _bool,
        True,
        "Format and mount the NVMe instance store for the work directory.",
        "true",
        "aws",
    ),
    Setting(
        "EC2_ROOT_VOLUME_SIZE", "ec2_root_volume_gb", _int(8, 16384), 50, "Root EBS volume size (GB).", "50", "aws"
    ),
    Setting(
        "EC2_INSTANCE_AMI",
        "ec2_ami",
        _optional(_AWS_ID("ami")),
        None,
        "AMI id; empty: latest Amazon Linux 2023 from the public SSM parameter.",
        "ami-0123456789abcdef0",
        "aws",
    ),
    Setting(
        "EC2_AVAILABILITY_ZONES",
        "ec2_zones",
        _list(_AZ),
        (),
        "Zones tried in turn on capacity errors; empty: any zone.",
        "us-east-1a,us-east-1b",
        "aws",
    ),
    Setting(
        "SPOT_PRICE",
        "spot_price",
        _optional(_positive_float),
        None,
        "Maximum spot price per hour (USD); empty: on-demand.",
        "0.10",
        "aws",
    ),
    Setting(
        "FC_EVAL_S3_BUCKET",
        "staging_bucket",
        _optional(_bucket),
        None,
        "S3 staging bucket (required by the cloud backends).",
        "my-fceval-staging",
        "aws",
    ),
    Setting(
        "S3_EVALUATION_SNAPSHOTS_BUCKET_NAME",
        "snapshots_bucket",
        _optional(_bucket),
        None,
        "Optional bucket for evaluation snapshots.",
        "my-fceval-snapshots",
        "aws",
    ),
    Setting(
        "S3_BUCKET_NAME",
        "results_bucket",
        _optional(_bucket),
        None,
        "Optional results bucket (used for artifacts when FCEVAL_ARTIFACTS is unset on cloud backends).",
        "my-fceval-results",
        "aws",
    ),
    Setting(
        "FCEVAL_INSTANCE_PROFILE",
        "instance_profile",
        _pattern(r"[\w+=,.@-]{1,128}", "an instance profile name"),
        "datasmith-batch-execution-role",
        "EC2 instance profile given to job instances.",
        "datasmith-batch-execution-role",
        "aws",
    ),
    Setting(
        "FCEVAL_EC2_SUBNET_ID",
        "ec2_subnet",
        _optional(_AWS_ID("subnet")),
        None,
        "Subnet for EC2 jobs; empty: the default VPC.",
        "subnet-0123456789abcdef0",
        "aws",
    ),
    Setting(
        "FCEVAL_REMOTE_WORK_DIR",
        "remote_work_dir",
        _pattern(r"/[\w./-]*", "an absolute path such as /fceval"),
        "/fceval",
        "Work directory on cloud compute (EC2 instance, ECS container, Batch job); jobs get a subdirectory.",
        "/fceval",
        "aws",
    ),
    Setting("FCEVAL_ECS_CLUSTER", "ecs_cluster", _text, "fceval", "ECS cluster for Fargate jobs.", "fceval", "ecs"),
    Setting(
        "FCEVAL_ECS_IMAGE",
        "ecs_image",
        _text,
        "",
        "Container image template for Fargate jobs ({task_id} allowed).",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/tasks:{task_id}",
        "ecs",
    ),
    Setting(
        "FCEVAL_ECS_SUBNETS",
        "ecs_subnets",
        _list(_AWS_ID("subnet")),
        (),
        "Subnets for Fargate tasks.",
        "subnet-0123456789abcdef0",
        "ecs",
    ),
    Setting(
        "FCEVAL_ECS_SECURITY_GROUPS",
        "ecs_security_groups",
        _list(_AWS_ID("sg")),
        (),
        "Security groups for Fargate tasks.",
        "sg-0123456789abcdef0",
        "ecs",
    ),
    Setting(
        "FCEVAL_ECS_ASSIGN_PUBLIC_IP", "ecs_public_ip", _bool, False, "Give Fargate tasks a public IP.", "false", "ecs"
    ),
    Setting("FCEVAL_ECS_CPU", "ecs_cpu", _int(256, 16384), 2048, "Fargate task CPU units.", "2048", "ecs"),
    Setting("FCEVAL_ECS_MEMORY", "ecs_memory", _int(512, 122880), 8192, "Fargate task memory (MiB).", "8192", "ecs"),
    Setting(
        "FCEVAL_ECS_TASK_ROLE_ARN",
        "ecs_task_role_arn",
        _text,
        "",
        "Task role (needs ssmmessages:* for ECS Exec).",
        "arn:aws:iam::123456789012:role/fceval-task",
        "ecs",
    ),
    Setting(
        "FCEVAL_ECS_EXECUTION_ROLE_ARN",
        "ecs_execution_role_arn",
        _text,
        "",
        "Task execution role.",
        "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        "ecs",
    ),
    Setting("FCEVAL_BATCH_QUEUE", "batch_queue", _text, "", "AWS Batch job queue.", "fceval-queue", "batch"),
    Setting(
        "FCEVAL_BATCH_JOB_DEFINITION",
        "batch_job_definition",
        _text,
        "",
        "AWS Batch job definition.",
        "fceval-job",
        "batch",
    ),
    Setting("FCEVAL_BATCH_VCPU", "batch_vcpu", _int(1, 256), 2, "vCPUs per Batch job.", "2", "batch"),
    Setting(
        "FCEVAL_BATCH_MEMORY",
        "batch_memory",
        _int(128, 1_000_000),
        4096,
        "Memory per Batch job (MiB).",
        "4096",
        "batch",
    ),
    Setting("FCEVAL_BATCH_GPUS", "batch_gpus", _int(0, 16), 0, "GPUs per Batch job.", "0", "batch"),
    Setting(
        "FCEVAL_BATCH_RETRY_ATTEMPTS",
        "batch_retry_attempts",
        _int(1, 10),
        1,
        "Batch-side retry attempts.",
        "1",
        "batch",
    ),
    Setting(
        "FCEVAL_BATCH_LOG_GROUP",
        "batch_log_group",
        _text,
        "/aws/batch/job",
        "CloudWatch log group of Batch jobs.",
        "/aws/batch/job",
        "batch",
    ),
)
BY_ENV = {s.env: s for s in SETTINGS}
BY_ATTR = {s.attr: s for s in SETTINGS}


@dataclass(frozen=True)
class Settings:
    values: Mapping[str, Any]
    sources: Mapping[str, str]
    state_dir: Path
    env_file: Path | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def artifact_prefix(self) -> str:
        return self.values["artifacts"] or str(self.state_dir / "artifacts")

    def with_raw(self, raw: Mapping[str, str]) -> Settings:
        """Apply user-typed values (attr -> text), parsed and checked exactly as on the command line."""
        return self.replace(**{attr: BY_ATTR[attr].parse(BY_ATTR[attr].env, text) for attr, text in raw.items()})

    def replace(self, **overrides: Any) -> Settings:
        values = dict(self.values)
        sources = dict(self.sources)
        for attr, value in overrides.items():
            if attr not in BY_ATTR:
                raise KeyError(attr)
            values[attr] = value
            sources[attr] = "override"
        return Settings(values, sources, self.state_dir, self.env_file, self.extra)


def read_env_file(path: Path) -> dict[str, str]:
    """Parse a .env file strictly: a line python-dotenv cannot parse is an error, not a warning."""
    from dotenv.parser import parse_stream

    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not valid UTF-8", "save the .env file as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})", "check the path given to --env-file") from None
    import io

    values: dict[str, str] = {}
    for binding in parse_stream(io.StringIO(text)):
        if binding.error:
            line = binding.original.line
            snippet = binding.original.string.strip().splitlines()[0] if binding.original.string.strip() else ""
            raise ConfigError(
                f"{path}:{line}: cannot parse {snippet!r}",
                "write KEY=value, quote values that contain spaces or '#'",
            )
        if binding.key is not None:
            values[binding.key] = binding.value or ""
    return values


def default_state_dir() -> Path:
    import platformdirs

    return Path(platformdirs.user_state_dir("fceval-tui", appauthor=False))


def ensure_state_dir(path: Path) -> Path:
    path = path.expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StateDirError(
            f"state directory {path} is not writable ({exc.strerror})",
            "pass --state-dir DIR or set FCEVAL_STATE_DIR to a writable directory",
        ) from None
    return path


def load_settings(
    cli: Mapping[str, Any] | None = None,
    env_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    state_dir: Path | None = None,
    explicit_env_file: bool = False,
) -> Settings:
    """Resolve every setting. `cli` holds already-typed values keyed by attr (None = not given)."""
    environ = os.environ if environ is None else environ
    cli = {k: v for k, v in (cli or {}).items() if v is not None}
    file_values: dict[str, str] = {}
    if env_file is not None:
        if env_file.is_file():
            file_values = read_env_file(env_file)
        elif explicit_env_file:
            raise ConfigError(f"--env-file {env_file}: file not found", "give the path of an existing .env file")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for setting in SETTINGS:
        if setting.attr in cli:
            raw, source = cli[setting.attr], "command line"
            if isinstance(raw, str):
                raw = setting.parse(setting.env, raw)
            values[setting.attr] = raw
        elif setting.env in environ:
            source = "environment"
            values[setting.attr] = setting.parse(setting.env, environ[setting.env])
        elif setting.env in file_values:
            source = str(env_file)
            values[setting.attr] = setting.parse(setting.env, file_values[setting.env])
        else:
            source = "default"
            values[setting.attr] = setting.default_value()
        sources[setting.attr] = source
    unknown = sorted(k for k in file_values if k.startswith("FCEVAL_") and k not in BY_ENV and k != "FCEVAL_STATE_DIR")
    if unknown:
        raise ConfigError(f"{env_file}: unknown variable {unknown[0]}", "check the spelling against .env.template")
    if state_dir is None:
        raw_dir = environ.get("FCEVAL_STATE_DIR") or file_values.get("FCEVAL_STATE_DIR")
        state_dir = Path(raw_dir) if raw_dir else default_state_dir()
    return Settings(values, sources, state_dir.expanduser(), env_file)


_GROUP_TITLES = {
    "general": "General",
    "aws": "AWS (FC-Eval's names, kept as they are)",
    "ecs": "ECS Fargate backend",
    "batch": "AWS Batch backend",
}
_DEFAULT_TEXT = {
    "run_command": "the bundled example harness (examples/harness.py agent ...)",
    "grade_command": "the bundled example harness (examples/harness.py grade ...)",
    "artifacts": "<state dir>/artifacts",
}


def render_env_template() -> str:
    """The text of `.env.template`, generated from SETTINGS so the two cannot drift."""

    def shown(setting: Setting) -> str:
        default = setting.default
        if setting.attr in _DEFAULT_TEXT:
            return _DEFAULT_TEXT[setting.attr]
        if isinstance(default, bool):
            return str(default).lower()
        if isinstance(default, tuple):
            default = ",".join(default)
        return str(default) if default not in (None, "") else "(empty)"

    lines = [
        "# fceval-tui settings: copy to .env and uncomment what you change.",
        "# Precedence: command line > environment > .env > defaults. Generated from fceval_tui/config.py.",
        "",
        "# Ledger, logs and job work files. Default: the platform's user state dir.",
        "# FCEVAL_STATE_DIR=/data/fceval-state",
    ]
    for group, title in _GROUP_TITLES.items():
        lines += ["", f"# --- {title} ---"]
        for setting in (s for s in SETTINGS if s.group == group):
            example = setting.example
            if any(ch in example for ch in " {}#'\"$"):
                example = "'" + example + "'"
            lines.append(f"# {setting.doc} Default: {shown(setting)}.")
            lines.append(f"# {setting.env}={example}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_env_template())
