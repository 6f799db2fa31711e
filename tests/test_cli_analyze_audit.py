"""`photomarker analyze` and the audit trail: refusals and finished analyses are recorded, no paths."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from click.testing import CliRunner

from plugin.cli import main
from tests.analyze_cli import FOREARM, run


def test_refusals_and_analyses_land_in_the_audit_trail(tmp_path: Path) -> None:
    bad = tmp_path / "empty.jpg"
    bad.write_bytes(b"")
    run(str(bad), str(FOREARM))
    from audit.store import AuditStore

    data_dir = Path(os.environ["PHOTOMARKER_DATA_DIR"])
    with AuditStore.from_url(f"sqlite:///{data_dir / 'audit.sqlite'}") as store:
        events = {e.record.event: e.record for e in store.search().events}
    refused = events["input.refused"]
    assert refused.outcome_reason is not None and refused.outcome_reason.startswith("empty-photo:")
    assert str(tmp_path) not in (refused.outcome_reason or ""), "file paths can name patients"
    finished = events["analysis.finished"]
    sha256 = hashlib.sha256(FOREARM.read_bytes()).hexdigest()
    assert finished.entities == (f"sha256:{sha256}",)
    assert finished.agent_who is not None and finished.agent_who.startswith("cli:")
    verified = CliRunner().invoke(main, ["audit", "verify"])
    assert verified.exit_code == 0, verified.output
