"""Settings: command line > environment > .env > defaults, declared once as the fields of `Settings`.

Each field is typed and carries its variable, parser, default, documentation and example as
metadata; `SETTINGS`, `.env.template` (a test keeps the file in step), CLI help suffixes and the
ledger's JSON are derived from those fields. FC-Eval's variable names are kept as they are; new
ones are FCEVAL_*. A bad value stops with one line naming the variable, the value and the expected form.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import shlex
import sys
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from fceval_tui import locations
from fceval_tui.domain.models import BACKENDS
from fceval_tui.domain.template import CommandTemplate
from fceval_tui.errors import ConfigError
from fceval_tui.package_data import example_harness

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


_AZ = _pattern(r"[a-z]{2}(-[a-z]+)+-\d[a-z]", "an availability zone such as us-east-1a")
_AWS_ID = lambda prefix: _pattern(prefix + r"-[0-9a-f]{8,17}", f"an id like {prefix}-0123456789abcdef0")  # noqa: E731


@dataclass(frozen=True, kw_only=True)
class Settings:
    """Every setting as a typed field, with where it came from. Build it with `load_settings`."""

    backend: str = _setting(
        "FCEVAL_BACKEND", _choice(*BACKENDS), "local", "Where jobs run: local tmux, ec2, ecs or batch.", "local"
    )
    concurrent: int = _setting("FCEVAL_CONCURRENT", _int(1, 1000), 4, "Jobs running at the same time.", "15")
    job_timeout_minutes: float = _setting(
        "FCEVAL_JOB_TIMEOUT_MINUTES",
        _positive_float,
        60.0,
        "Per-job time limit; a job past it ends as timed_out.",
        "90",
    )
    ttl_minutes: float = _setting(
        "FCEVAL_TTL_MINUTES",
        _positive_float,
        180.0,
        "Hard lifetime of any cloud resource (dead-man's switch), enforced remotely.",
        "240",
    )
    max_attempts: int = _setting(
        "FCEVAL_MAX_ATTEMPTS",
        _int(1, 20),
        3,
        "Attempts per job for transient errors (capacity, throttling, lost session).",
        "3",
    )
    run_command: CommandTemplate = _setting(
        "FCEVAL_RUN_COMMAND",
        _template,
        _default_run_command,
        "Agent step. Placeholders: {agent} {task_id} {model} {dataset} {run_id} {job_id} {artifacts_dir}; "
        "values are shell-quoted.",
        "fceval run --agent {agent} --task-id {task_id} --model {model} --output {artifacts_dir}",
        shown="the bundled example harness (examples/harness.py agent ...)",
    )
    grade_command: CommandTemplate | None = _setting(
        "FCEVAL_GRADE_COMMAND",
        _optional(_template),
        _default_grade_command,
        "Grading step, run after a successful agent step (same placeholders). Empty: no grading step.",
        "fceval grade --task-id {task_id} --run-dir {artifacts_dir}",
        shown="the bundled example harness (examples/harness.py grade ...)",
    )
    agent: str = _setting("FCEVAL_AGENT", _text, "", "Agent used with --task-id when --agent is not given.", "aide")
    model: str = _setting("FCEVAL_MODEL", _text, "", "Model used when a job line has none.", "gpt-4o")
    dataset: str = _setting("FCEVAL_DATASET", _text, "", "Dataset passed to the harness as {dataset}.", "formulacode")
    artifacts: str | None = _setting(
        "FCEVAL_ARTIFACTS",
        _optional(_prefix),
        None,
        "Artifact prefix: a local directory or s3://bucket/prefix.",
        "s3://my-results/fceval",
        shown="<state dir>/artifacts",
    )
    keep_sessions: bool = _setting(
        "FCEVAL_KEEP_SESSIONS", _bool, False, "Keep a job's tmux session after it ends (for inspection).", "false"
    )
    theme: str = _setting("FCEVAL_THEME", _text, "fceval-dark", "Console theme name.", "fceval-light")
    aws_command_prefix: tuple[str, ...] = _setting(
        "FCEVAL_AWS_COMMAND_PREFIX",
        _command_prefix,
        (),
        "Words put before every `aws` CLI call (interactive sessions).",
        "aws-vault exec myprofile --",
    )
    # FC-Eval's names, kept as they are.
    region: str = _setting(
        "AWS_REGION",
        _pattern(r"[a-z]{2}(-[a-z]+)+-\d", "a region such as us-east-1"),
        "us-east-1",
        "AWS region.",
        "us-east-1",
        group="aws",
    )
    profile: str = _setting(
        "AWS_PROFILE", _text, "", "AWS profile (SSO profiles work); empty: default chain.", "eval", group="aws"
    )
    ec2_instance_type: str = _setting(
        "EC2_INSTANCE_TYPE",
        _pattern(r"[a-z][a-z0-9-]*\.[a-z0-9]+", "an instance type such as c5ad.large"),
        "c5ad.large",
        "EC2 instance type.",
        "c5ad.large",
        group="aws",
    )
    ec2_use_nvme: bool = _setting(
        "EC2_USE_NVME_STORAGE",
        _bool,
        True,
        "Format and mount the NVMe instance store for the work directory.",
        "true",
        group="aws",
    )
    ec2_root_volume_gb: int = _setting(
        "EC2_ROOT_VOLUME_SIZE", _int(8, 16384), 50, "Root EBS volume size (GB).", "50", group="aws"
    )
    ec2_ami: str | None = _setting(
        "EC2_INSTANCE_AMI",
        _optional(_AWS_ID("ami")),
        None,
        "AMI id; empty: latest Amazon Linux 2023 from the public SSM parameter.",
        "ami-0123456789abcdef0",
        group="aws",
    )
    ec2_zones: tuple[str, ...] = _setting(
        "EC2_AVAILABILITY_ZONES",
        _list(_AZ),
        (),
        "Zones tried in turn on capacity errors; empty: any zone.",
        "us-east-1a,us-east-1b",
        group="aws",
    )
    spot_price: float | None = _setting(
        "SPOT_PRICE",
        _optional(_positive_float),
        None,
        "Maximum spot price per hour (USD); empty: on-demand.",
        "0.10",
        group="aws",
    )
    staging_bucket: str | None = _setting(
        "FC_EVAL_S3_BUCKET",
        _optional(_bucket),
        None,
        "S3 staging bucket (required by the cloud backends).",
        "my-fceval-staging",
        group="aws",
    )
    snapshots_bucket: str | None = _setting(
        "S3_EVALUATION_SNAPSHOTS_BUCKET_NAME",
        _optional(_bucket),
        None,
        "Optional bucket for evaluation snapshots.",
        "my-fceval-snapshots",
        group="aws",
    )
    results_bucket: str | None = _setting(
        "S3_BUCKET_NAME",
        _optional(_bucket),
        None,
        "Optional results bucket (used for artifacts when FCEVAL_ARTIFACTS is unset on cloud backends).",
        "my-fceval-results",
        group="aws",
    )
    instance_profile: str = _setting(
        "FCEVAL_INSTANCE_PROFILE",
        _pattern(r"[\w+=,.@-]{1,128}", "an instance profile name"),
        "datasmith-batch-execution-role",
        "EC2 instance profile given to job instances.",
        "datasmith-batch-execution-role",
        group="aws",
    )
    ec2_subnet: str | None = _setting(
        "FCEVAL_EC2_SUBNET_ID",
        _optional(_AWS_ID("subnet")),
        None,
        "Subnet for EC2 jobs; empty: the default VPC.",
        "subnet-0123456789abcdef0",
        group="aws",
    )
    remote_work_dir: str = _setting(
        "FCEVAL_REMOTE_WORK_DIR",
        _pattern(r"/[\w./-]*", "an absolute path such as /fceval"),
        "/fceval",
        "Work directory on cloud compute (EC2 instance, ECS container, Batch job); jobs get a subdirectory.",
        "/fceval",
        group="aws",
    )
    ecs_cluster: str = _setting(
        "FCEVAL_ECS_CLUSTER", _text, "fceval", "ECS cluster for Fargate jobs.", "fceval", group="ecs"
    )
    ecs_image: str = _setting(
        "FCEVAL_ECS_IMAGE",
        _text,
        "",
        "Container image template for Fargate jobs ({task_id} allowed).",
        "123456789012.dkr.ecr.us-east-1.amazonaws.com/tasks:{task_id}",
        group="ecs",
    )
    ecs_subnets: tuple[str, ...] = _setting(
        "FCEVAL_ECS_SUBNETS",
        _list(_AWS_ID("subnet")),
        (),
        "Subnets for Fargate tasks.",
        "subnet-0123456789abcdef0",
        group="ecs",
    )
    ecs_security_groups: tuple[str, ...] = _setting(
        "FCEVAL_ECS_SECURITY_GROUPS",
        _list(_AWS_ID("sg")),
        (),
        "Security groups for Fargate tasks.",
        "sg-0123456789abcdef0",
        group="ecs",
    )
    ecs_public_ip: bool = _setting(
        "FCEVAL_ECS_ASSIGN_PUBLIC_IP", _bool, False, "Give Fargate tasks a public IP.", "false", group="ecs"
    )
    ecs_cpu: int = _setting("FCEVAL_ECS_CPU", _int(256, 16384), 2048, "Fargate task CPU units.", "2048", group="ecs")
    ecs_memory: int = _setting(
        "FCEVAL_ECS_MEMORY", _int(512, 122880), 8192, "Fargate task memory (MiB).", "8192", group="ecs"
    )
    ecs_task_role_arn: str = _setting(
        "FCEVAL_ECS_TASK_ROLE_ARN",
        _text,
        "",
        "Task role (needs ssmmessages:* for ECS Exec).",
        "arn:aws:iam::123456789012:role/fceval-task",
        group="ecs",
    )
    ecs_execution_role_arn: str = _setting(
        "FCEVAL_ECS_EXECUTION_ROLE_ARN",
        _text,
        "",
        "Task execution role.",
        "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
        group="ecs",
    )
    batch_queue: str = _setting("FCEVAL_BATCH_QUEUE", _text, "", "AWS Batch job queue.", "fceval-queue", group="batch")
    batch_job_definition: str = _setting(
        "FCEVAL_BATCH_JOB_DEFINITION", _text, "", "AWS Batch job definition.", "fceval-job", group="batch"
    )
    batch_vcpu: int = _setting("FCEVAL_BATCH_VCPU", _int(1, 256), 2, "vCPUs per Batch job.", "2", group="batch")
    batch_memory: int = _setting(
        "FCEVAL_BATCH_MEMORY", _int(128, 1_000_000), 4096, "Memory per Batch job (MiB).", "4096", group="batch"
    )
    batch_gpus: int = _setting("FCEVAL_BATCH_GPUS", _int(0, 16), 0, "GPUs per Batch job.", "0", group="batch")
    batch_retry_attempts: int = _setting(
        "FCEVAL_BATCH_RETRY_ATTEMPTS", _int(1, 10), 1, "Batch-side retry attempts.", "1", group="batch"
    )
    batch_log_group: str = _setting(
        "FCEVAL_BATCH_LOG_GROUP",
        _text,
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
    for s in SETTINGS:
        if s.attr in cli:
            raw, source = cli[s.attr], "command line"
            values[s.attr] = s.parse(s.env, raw) if isinstance(raw, str) else raw
        elif s.env in environ:
            source = "environment"
            values[s.attr] = s.parse(s.env, environ[s.env])
        elif s.env in file_values:
            source = str(env_file)
            values[s.attr] = s.parse(s.env, file_values[s.env])
        else:
            source = "default"
            values[s.attr] = s.default_value()
        sources[s.attr] = source
    unknown = sorted(k for k in file_values if k.startswith("FCEVAL_") and k not in _BY_ENV and k != "FCEVAL_STATE_DIR")
    if unknown:
        raise ConfigError(f"{env_file}: unknown variable {unknown[0]}", "check the spelling against .env.template")
    if state_dir is None:
        raw_dir = environ.get("FCEVAL_STATE_DIR") or file_values.get("FCEVAL_STATE_DIR")
        state_dir = Path(raw_dir) if raw_dir else locations.default_state_dir()
    return Settings(**values, state_dir=state_dir.expanduser(), env_file=env_file, sources=sources)


_GROUP_TITLES = {
    "general": "General",
    "aws": "AWS (FC-Eval's names, kept as they are)",
    "ecs": "ECS Fargate backend",
    "batch": "AWS Batch backend",
}


def render_env_template() -> str:
    """The text of `.env.template`, generated from the settings fields so the two cannot drift."""
    lines = [
        "# fceval-tui settings: copy to .env and uncomment what you change.",
        "# Precedence: command line > environment > .env > defaults. Generated from fceval_tui/config.py.",
        "",
        "# Ledger, logs and job work files. Default: the platform's user state dir.",
        "# FCEVAL_STATE_DIR=/data/fceval-state",
    ]
    for group, title in _GROUP_TITLES.items():
        lines += ["", f"# --- {title} ---"]
        for s in (s for s in SETTINGS if s.group == group):
            example = s.example
            if any(ch in example for ch in " {}#'\"$"):
                example = "'" + example + "'"
            lines.append(f"# {s.doc} Default: {s.shown_default() or '(empty)'}.")
            lines.append(f"# {s.env}={example}")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render_env_template())
