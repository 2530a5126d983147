import pytest
from hypothesis import given
from hypothesis import strategies as st

from fceval_tui.domain import jobfile
from fceval_tui.domain.artifacts import keys_for, safe_path
from fceval_tui.domain.models import Job
from fceval_tui.domain.states import FINAL_STATES, TRANSITIONS, JobState
from fceval_tui.domain.template import CommandTemplate
from fceval_tui.errors import ConfigError, JobFileError


def test_final_states_are_the_contracts_four():
    assert {s.value for s in FINAL_STATES} == {"succeeded", "failed", "cancelled", "timed_out"}
    assert TRANSITIONS[JobState.SUCCEEDED] == frozenset()
    # Final states leave only through an explicit retry back to pending.
    for state in FINAL_STATES - {JobState.SUCCEEDED}:
        assert TRANSITIONS[state] == {JobState.PENDING}


def test_every_active_state_can_end():
    for state in JobState:
        if not state.is_final:
            assert state.can_go(JobState.CANCELLED)
            assert state.can_go(JobState.FAILED)
            # A transient error at any stage (even grading or uploading) may send it back for a retry.
            assert state == JobState.PENDING or state.can_go(JobState.PENDING)


def test_parse_header_comments_blank_and_models():
    text = "# jobs\nagent,task_id,model\n\naide, t1 ,gpt\n biomni,hub/t2\n"
    parsed = jobfile.parse_text(text, "jobs.csv", default_model="m0")
    assert [(s.agent, s.task_id, s.model) for s in parsed.specs] == [("aide", "t1", "gpt"), ("biomni", "hub/t2", "m0")]
    assert parsed.warnings == ()


def test_missing_column_names_file_and_line():
    with pytest.raises(JobFileError, match=r"jobs\.csv:3: expected 'agent,task_id\[,model\]'"):
        jobfile.parse_text("a,t\n# c\nonlyagent\n", "jobs.csv")


def test_empty_file_is_an_error():
    with pytest.raises(JobFileError, match="no jobs found"):
        jobfile.parse_text("# nothing\n\n", "empty.csv")


def test_non_utf8_file_names_the_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_bytes(b"aide,t1\naide,t\xff2\n")
    with pytest.raises(JobFileError, match=r"bad\.csv:2: not valid UTF-8"):
        jobfile.parse_file(path)


def test_duplicates_are_dropped_with_a_warning_naming_both_lines():
    parsed = jobfile.parse_text("aide,t1\naide,t2\naide,t1\n", "j.csv")
    assert len(parsed.specs) == 2
    assert parsed.warnings == ("j.csv:3: duplicate of line 1 (aide,t1); skipped",)


def test_newline_inside_quoted_field_is_refused():
    with pytest.raises(JobFileError, match="control character"):
        jobfile.parse_text('aide,"a\tb"\n', "j.csv")


def test_too_many_columns():
    with pytest.raises(JobFileError, match=r"j\.csv:1: expected at most 3 columns"):
        jobfile.parse_text("a,b,c,d\n", "j.csv")


@pytest.mark.parametrize("column", [0, 1, 2])
@pytest.mark.parametrize("quoted", [False, True])
def test_a_huge_field_names_file_line_and_limit(tmp_path, column, quoted):
    """A 200 KB value is above the csv module's own field limit: still one clear error, never _csv.Error."""
    huge = "x" * 200_000
    fields = ["aide", "t1", "gpt"]
    fields[column] = f'"{huge}"' if quoted else huge
    path = tmp_path / "big.csv"
    path.write_text("aide,t0\n" + ",".join(fields) + "\n")
    with pytest.raises(JobFileError) as caught:
        jobfile.parse_file(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:2: ") and str(jobfile.MAX_FIELD) in message and len(message) < 400


def test_a_huge_line_without_commas_is_reported_briefly():
    with pytest.raises(JobFileError, match=r"j\.csv:1: ") as caught:
        jobfile.parse_text("y" * 100_000 + "\n", "j.csv")
    assert len(str(caught.value)) < 400


def test_huge_command_line_values_are_refused():
    with pytest.raises(
        JobFileError, match=rf"--task-id #1: task_id is 200000 characters long \(at most {jobfile.MAX_FIELD}\)"
    ):
        jobfile.from_task_ids(["z" * 200_000], agent="aide")
    with pytest.raises(JobFileError, match=r"--model: model is 200000 characters long"):
        jobfile.from_task_ids(["t1"], agent="aide", model="m" * 200_000)
    with pytest.raises(JobFileError, match=r"--model: model is 200000 characters long"):
        jobfile.parse_text("aide,t1\n", "j.csv", default_model="m" * 200_000)


@given(st.text(alphabet=st.sampled_from('ab,"# \t\r\n\x00\x0c\u2028'), max_size=300), st.integers(0, 200_000))
def test_any_job_file_text_parses_or_raises_a_job_file_error(text, pad):
    text = text.replace("b", "b" * pad, 1)  # sometimes one value far above every limit
    try:
        jobfile.parse_text(text, "j.csv")
    except JobFileError as exc:
        assert str(exc).startswith("j.csv") and len(str(exc)) < 400


def test_unknown_placeholder_is_a_config_error():
    with pytest.raises(ConfigError, match=r"FCEVAL_RUN_COMMAND=.*unknown placeholder \{task\}"):
        CommandTemplate("FCEVAL_RUN_COMMAND", "run {task}")
    with pytest.raises(ConfigError, match="no format"):
        CommandTemplate("FCEVAL_RUN_COMMAND", "run {task_id!r}")


@given(st.text(min_size=1, max_size=40).filter(lambda v: not set(v) & {"\n", "\r", "\x00"}))
def test_previewed_values_are_one_shell_word(value):
    import shlex

    rendered = CommandTemplate("X", "echo {task_id} {agent}").preview({"task_id": value, "agent": "a"})
    assert shlex.split(rendered) == ["echo", value, "a"]


def test_rendered_commands_reference_the_environment_never_the_values():
    rendered = CommandTemplate("X", "run --task {task_id} --job {job_id}").render()
    assert rendered == 'run --task "$FCEVAL_JOB_TASK_ID" --job "$FCEVAL_JOB_ID"'


HOSTILE = ["x; touch {canary}", "$(touch {canary})", "`touch {canary}`", "a'b\"c $HOME \\ {{}}"]


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize(
    ("template", "shown"),
    [
        ("printf '%s\\n' {task_id} > out.txt", "{}"),
        # An unquoted heredoc expands $(...) and backticks in its body (a shell-quoted value would
        # run there); its quotes are literal, so the reference shows up quoted.
        ("cat > out.txt <<EOF\n{task_id}\nEOF", '"{}"'),
        ("printf '%s\\n' {task_id} | cat > out.txt", "{}"),
    ],
)
def test_hostile_values_stay_data_through_the_real_pipeline(tmp_path, hostile, template, shown):
    import subprocess

    from fceval_tui.domain import pipeline
    from fceval_tui.domain.template import job_environment

    canary = tmp_path / "pwned"
    value = hostile.format(canary=canary)
    command = CommandTemplate("FCEVAL_RUN_COMMAND", template).render()
    work = tmp_path / "work"
    work.mkdir()
    env = job_environment({"task_id": value, "agent": "a"})
    (work / pipeline.ENV_FILE).write_text(pipeline.env_file_text(env))
    script = pipeline.render(str(work), str(work / "artifacts"), command, None)
    assert value not in script
    subprocess.run(["sh", "-c", script], cwd=work, capture_output=True, timeout=30, check=False)
    assert not canary.exists()
    assert (work / "out.txt").read_text() == shown.replace("{}", value) + "\n"


@pytest.mark.parametrize(
    "text", ["eval run {task_id}", "x; eval {agent}", "sh -c {task_id}", "bash -lc {task_id}", ". {task_id}"]
)
def test_placeholders_given_to_a_reparsing_command_are_refused(text):
    with pytest.raises(ConfigError, match="eval, source or a -c option"):
        CommandTemplate("FCEVAL_RUN_COMMAND", text)


@pytest.mark.parametrize("text", ["run -c {artifacts_dir}/c.yaml", "evaluate {task_id}", "cd . && run {task_id}"])
def test_ordinary_options_and_words_are_not_mistaken_for_reparsing(text):
    CommandTemplate("FCEVAL_RUN_COMMAND", text)


def test_a_value_with_a_line_break_cannot_reach_the_pipeline():
    from fceval_tui.domain.template import job_environment

    with pytest.raises(ConfigError, match="FCEVAL_JOB_TASK_ID holds a line break"):
        job_environment({"task_id": "a\nFCEVAL_JOB_AGENT=evil"})


def _job(agent="aide", task="hub/t1", model=""):
    return Job("r1-001", "r1", 1, agent, task, model, "", "local", JobState.SUCCEEDED)


def test_artifact_layout():
    from datetime import UTC, datetime

    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    keys = keys_for(_job(), True, when)
    assert keys.run_archive == "runs/aide/hub/t1/r1.tar.gz"
    assert keys.grading_report == "grades/aide/hub/t1/20260102T030405Z_grading_report.json.gz"
    failed = keys_for(_job(model="gpt-4o"), False, when)
    assert failed.run_archive == "failed_runs/aide/hub/t1/r1_gpt-4o.tar.gz"
    assert failed.grading_report.startswith("failed_grades/aide/hub/t1/")


@given(st.text(max_size=60))
def test_artifact_paths_never_escape_the_prefix(value):
    path = safe_path(value)
    assert not path.startswith("/")
    assert ".." not in path.split("/")
    assert "\n" not in path and "\x00" not in path


@pytest.mark.parametrize("text", ['echo "task={task_id}"', "echo 'a {agent} b'", 'run --x="{model}"'])
def test_placeholder_inside_quotes_is_refused(text):
    with pytest.raises(ConfigError, match="inside .*quotes.*write .* bare"):
        CommandTemplate("FCEVAL_RUN_COMMAND", text)


@pytest.mark.parametrize("text", ["echo task={task_id}", "echo \"x\" {task_id} 'y'", 'echo \\" {task_id}'])
def test_bare_placeholders_after_closed_or_escaped_quotes_are_fine(text):
    assert "'$(id -u)'" in CommandTemplate("FCEVAL_RUN_COMMAND", text).preview({"task_id": "$(id -u)"})
    assert '"$FCEVAL_JOB_TASK_ID"' in CommandTemplate("FCEVAL_RUN_COMMAND", text).render()
