"""Facts about what the console creates in AWS: its tags, its S3 keys and its resource names.

Each is written here once. The backends tag, name and list with them; teardown, the audit and
`audit --print-policy` find the console's resources and objects by them. No boto3 here.
"""

from __future__ import annotations

# Tags on every cloud resource the console creates (a contract: outside checks rely on them).
MANAGED_BY_TAG = "ManagedBy"
MANAGED_BY = "fceval-tui"
RUN_ID_TAG = "fceval:run-id"
JOB_ID_TAG = "fceval:job-id"
EXPIRES_AT_TAG = "fceval:expires-at"  # ISO 8601, UTC
# The same facts as S3 user metadata on staged objects (x-amz-meta-*; no ':' in a header name), so that
# teardown can tell a live attempt's objects without the ledger that staged them.
RUN_ID_METADATA = "fceval-run-id"
JOB_ID_METADATA = "fceval-job-id"
EXPIRES_AT_METADATA = "fceval-expires-at"
# EC2 only: which attempt launched an instance, so a retried launch finds its own instance.
ATTEMPT_TAG = "fceval:attempt"
# EC2 warm pools: the pool an instance belongs to (`exec --pool NAME`, teardown and the views select by it).
POOL_TAG = "fceval:pool"

# The console's S3 keys, all under one root so that one policy statement covers them.
S3_ROOT = "fceval-tui/"
STAGING_PREFIX = S3_ROOT + "staging/"  # per attempt: {run id}/{job id}/a{attempt}/
# The compute's only S3 access: PutObject under its attempt's inbox, {run id}/{job id}-a{attempt}-{token}/,
# where the token is 128 random bits known to that attempt alone (it cannot list, read or delete).
INBOX_PREFIX = S3_ROOT + "inbox/"
AUDIT_PREFIX = S3_ROOT + "audit/"  # the preflight audit's write/read/delete probes
DEFAULT_ARTIFACTS_PREFIX = S3_ROOT + "artifacts"  # when FCEVAL_ARTIFACTS is unset

# Names the console gives its resources (and finds them by).
EC2_SECURITY_GROUP = "fceval-tui-egress-only"
ECS_STARTED_BY = MANAGED_BY
ECS_FAMILY_PREFIX = "fceval-tui-"
ECS_LOG_STREAM_PREFIX = "fceval-tui"  # awslogs-stream-prefix of the tasks' log streams
BATCH_JOB_PREFIX = "fceval-"
