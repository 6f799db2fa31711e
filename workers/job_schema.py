"""The job store's tables: jobs, API tokens, encrypted FHIR credentials, the workers seen, progress.

Created with ``metadata.create_all`` (small, additive, no migrations yet): a table added here
appears in an existing database at the next start; a column added to an existing table would not.
"""

from __future__ import annotations

from sqlalchemy import Column, Float, Index, Integer, LargeBinary, MetaData, String, Table, Text

metadata = MetaData()

jobs = Table(
    "photomarker_job",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("queue", String(32), nullable=False),
    Column("kind", String(16), nullable=False),  # what the client asked for: auto, skin, conjunctiva
    Column("fhir_base", Text),  # where the photo is read from and results written to; None: nowhere
    Column("reference", String(256)),  # "Media/123" for {"reference": …} submissions
    Column("resource", Text),  # the submitted resource's JSON for {"resource": …} submissions
    Column("credential", String(64)),  # handle into the credential store, never the token
    Column("requested_by", String(200), nullable=False),
    Column("patient", String(200)),
    Column("batch_owner", String(32)),  # the job whose message is responsible for this one
    Column("worker", String(200)),  # host:pid that last claimed it
    Column("lease_until", Float),
    Column("attempts", Integer, nullable=False, default=0),  # times a worker started it
    Column("transient_failures", Integer, nullable=False, default=0),
    Column("error_code", String(64)),
    Column("error_message", Text),
    Column("written", Text),  # JSON list of "Type/id" the write-back created or found
    Column("result_bundle", Text),  # JSON transaction Bundle, kept when there was no server to write to
    # Unix seconds: exact, comparable, zone-free; shown in the reader's zone.
    Column("created_at", Float, nullable=False),
    Column("started_at", Float),
    Column("finished_at", Float),
    Index("ix_photomarker_job_claim", "status", "queue", "created_at"),
    Index("ix_photomarker_job_owner", "batch_owner", "status"),
)

api_tokens = Table(
    "photomarker_api_token",
    metadata,
    Column("name", String(100), primary_key=True),
    Column("token_sha256", String(64), nullable=False, unique=True),
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float),
)

fhir_credentials = Table(
    "photomarker_fhir_credential",
    metadata,
    Column("handle", String(64), primary_key=True),
    Column("ciphertext", LargeBinary, nullable=False),
    Column("created_at", Float, nullable=False),
)

# Every worker process that consumes the queues announces itself here every few seconds
# (``workers.liveness``): /healthz reads it to tell "no worker" from "busy".
workers = Table(
    "photomarker_worker",
    metadata,
    Column("name", String(200), primary_key=True),  # host:pid
    Column("queues", String(200), nullable=False),
    Column("started_at", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
)

# How far a running video or series job has got (``workers.progress``): a display aid for the
# clinician's progress line and the jobs API, never state a job's outcome depends on.
job_progress = Table(
    "photomarker_job_progress",
    metadata,
    Column("job_id", String(32), primary_key=True),
    Column("done", Integer, nullable=False),
    Column("total", Integer, nullable=False),
    Column("unit", String(16), nullable=False),  # "frame" (a video) or "photo" (a series)
    Column("updated_at", Float, nullable=False),
)
