"""Why a job's upload failed, read from the end of its CloudWatch log stream (ECS and Batch).

On EC2 the console reads the pipeline's `upload.err` on the instance; an ECS task or a Batch job has
stopped by the time its uploads are found missing, and what is left of it is its output in CloudWatch
Logs, where the pipeline's `pipeline.UPLOAD_FAILED` line carries the aws CLI's error.

One bounded read (GetLogEvents from the tail), asked only once an upload is missing. It only adds a
reason: a read that fails (throttled, denied, the stream not there yet) leaves the verdict as it was.
"""

from __future__ import annotations

import logging

from fceval_tui.backends.aws import AWS_ERRORS
from fceval_tui.domain import pipeline

log = logging.getLogger(__name__)

TAIL_EVENTS = 200  # the pipeline's last lines: its upload lines come after the agent's and grader's output


def upload_error(logs, group: str, stream: str | None) -> str:
    """The failed upload's error in the last `TAIL_EVENTS` events of `group`/`stream` ("" when not found)."""
    if not group or not stream:
        return ""
    try:
        events = logs.get_log_events(logGroupName=group, logStreamName=stream, limit=TAIL_EVENTS, startFromHead=False)[
            "events"
        ]
    except AWS_ERRORS as exc:
        log.info("reading the log stream %s %s for a failed upload's error: %s", group, stream, exc)
        return ""
    return pipeline.upload_error_in(event["message"] for event in events)
