"""Teardown of EC2 leftovers on the shared moto server: instances (and their security group and
S3 staging objects) of a run whose console was killed, plus an instance of a run this ledger
never saw, are all orphans; `--dry-run` changes nothing, `--yes` removes them, a second call
finds nothing."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from argparse import Namespace

from fceval_tui.backends.ec2 import Ec2Backend
from fceval_tui.cli.commands import teardown as teardown_cli
from fceval_tui.domain.states import JobState
from fceval_tui.ledger import Ledger
from fceval_tui.services import teardown
from tests.helpers.aws import PROFILE, REGION, STAGING, make_context, new_run_id, spec
from tests.helpers.cli import run_cli

CLAIM_AND_SLEEP = (
    "import sys, time\nfrom pathlib import Path\nfrom fceval_tui.ledger import Ledger\n"
    "Ledger.open(Path(sys.argv[1])).claim_run(sys.argv[2])\nprint('claimed', flush=True)\n"
    "time.sleep(300)\n"
)


def kill_runner_of(state_dir, run_id: str) -> int:
    """A process claims the run like a console's runner does, then is killed with SIGKILL."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CLAIM_AND_SLEEP, str(state_dir), run_id], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "claimed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return proc.pid


def instance_states(world, ids) -> dict[str, str]:
    reply = world.client("ec2").describe_instances(InstanceIds=list(ids))
    return {i["InstanceId"]: i["State"]["Name"] for r in reply["Reservations"] for i in r["Instances"]}


def staging_keys(world, run_id: str) -> list[str]:
    reply = world.client("s3").list_objects_v2(Bucket=STAGING, Prefix=f"fceval-tui/staging/{run_id}/")
    return [item["Key"] for item in reply.get("Contents", [])]


def test_ec2_orphans_of_a_killed_console(aws_env, aws_settings):
    settings = aws_settings(FCEVAL_BACKEND="ec2", EC2_INSTANCE_TYPE="t3.medium")
    ledger = Ledger.open(settings.state_dir)
    run, jobs = ledger.create_run("ec2", 2, [spec("a"), spec("b")])
    backend = Ec2Backend(settings)
    ours = []
    for job in jobs:
        ctx = make_context(settings, run.id, seq=job.seq, task_id=job.task_id)
        instance = backend.provision(ctx)
        ledger.transition(job.id, JobState.PROVISIONING, resource_id=instance, attempts=1)
        aws_env.client("s3").put_object(
            Bucket=STAGING, Key=f"fceval-tui/staging/{run.id}/{job.id}/a1/manifest.json", Body=b"{}"
        )
        ours.append(instance)
    stranger = backend.provision(make_context(settings, new_run_id(), task_id="stranger"))
    kill_runner_of(settings.state_dir, run.id)
    assert ledger.run_owner(run.id) is None
    env = {
        "FCEVAL_BACKEND": "ec2",
        "FC_EVAL_S3_BUCKET": STAGING,
        "FCEVAL_INSTANCE_PROFILE": PROFILE,
        "AWS_REGION": REGION,
    }

    res = run_cli("teardown", "--orphans", "--dry-run", "--json", state_dir=settings.state_dir, env=env)
    assert res.code == 0, res.err
    plan = json.loads(res.out)
    by_id = {item["id"]: item for item in plan["plan"]}
    kept = {item["id"]: item for item in plan["kept"]}
    assert set(ours) <= set(by_id) and stranger not in by_id
    assert all("no live runner" in by_id[i]["reason"] for i in ours)
    # Another ledger's run, still inside its TTL, may be a colleague's live run: --orphans leaves it.
    assert "not in this ledger and lives until" in kept[stranger]["reason"]
    assert by_id[ours[0]]["cost_usd"] >= 0 and by_id[ours[0]]["age_seconds"] is not None
    staged = f"s3://{STAGING}/fceval-tui/staging/{run.id}/"
    assert by_id[staged]["kind"] == "staging-objects"
    # Nothing changed.
    assert set(instance_states(aws_env, [*ours, stranger]).values()) <= {"pending", "running"}
    assert len(staging_keys(aws_env, run.id)) == 2
    assert {j.state for j in ledger.jobs(run_id=run.id)} == {JobState.PROVISIONING}

    res = run_cli("teardown", "--orphans", "--yes", "--json", state_dir=settings.state_dir, env=env)
    assert res.code == 0, res.err + res.out
    result = json.loads(res.out)
    assert result["clean"] and result["left"] == []
    assert set(instance_states(aws_env, ours).values()) <= {"shutting-down", "terminated"}
    assert instance_states(aws_env, [stranger])[stranger] in ("pending", "running")
    assert staging_keys(aws_env, run.id) == []
    assert {j.state for j in ledger.jobs(run_id=run.id)} == {JobState.CANCELLED}

    again = teardown.make_plan(settings, ledger, teardown.Scope.orphans())
    assert again.items == [] and again.cancel_job_ids == [] and again.listing.unlisted == {}
    res = run_cli("teardown", "--all", "--yes", "--json", state_dir=settings.state_dir, env=env)
    assert res.code == 0, res.err + res.out
    assert instance_states(aws_env, [stranger])[stranger] in ("shutting-down", "terminated")
    ledger.close()


def test_unlistable_backend_is_reported_not_skipped(aws_env, aws_settings, monkeypatch, capsys):
    settings = aws_settings(FCEVAL_BACKEND="ec2")
    ledger = Ledger.open(settings.state_dir)
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(settings.state_dir / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(settings.state_dir / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    plan = teardown.make_plan(settings, ledger, teardown.Scope.orphans())
    # The staging lister builds a fresh Session; the EC2 backend may reuse one from earlier tests,
    # whose credentials botocore has cached, so only S3 is certain to fail here.
    assert "s3" in plan.listing.unlisted and "s3" not in plan.listing.listed
    assert all("credentials" in why for why in plan.listing.unlisted.values())
    result = teardown.execute(settings, ledger, plan)
    assert not result.clean  # cannot vouch that nothing is left
    args = Namespace(run=None, orphans=True, all=False, dry_run=True, yes=False, json=False)
    assert teardown_cli.tear_down(args, settings, ledger) == 1
    assert "could not list s3: listing staging objects" in capsys.readouterr().out
    ledger.close()
