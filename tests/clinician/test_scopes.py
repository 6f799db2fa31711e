"""Which scopes are asked for, and what a grant allows: SMART v2, with v1 for servers that list only v1."""

from __future__ import annotations

from plugin.smart.scopes import missing_write_scopes, permits, requested_scopes


def test_v2_by_default_and_when_the_server_lists_nothing() -> None:
    asked = requested_scopes([], ehr_launch=True, write_heatmaps=True).split()
    assert asked[:3] == ["launch", "openid", "fhirUser"] and "online_access" in asked
    assert {"patient/Observation.rs", "patient/Observation.c", "patient/Binary.r", "patient/Media.c"} <= set(
        asked
    )
    standalone = requested_scopes(["patient/*.rs", "launch"], ehr_launch=False, write_heatmaps=False).split()
    assert standalone[0] == "launch/patient" and "patient/Media.c" not in standalone


def test_v1_only_servers_get_read_and_write() -> None:
    asked = requested_scopes(
        ["patient/*.read", "patient/Observation.write", "openid"], ehr_launch=True, write_heatmaps=True
    )
    scopes = asked.split()
    assert "patient/Observation.read" in scopes and "patient/Observation.write" in scopes
    assert not [s for s in scopes if s.endswith((".rs", ".r", ".c"))]
    assert len(scopes) == len(set(scopes))


def test_what_a_grant_permits() -> None:
    granted = ["patient/Observation.rs", "patient/*.c", "user/Device.cruds", "patient/Media.write"]
    assert permits(granted, "Observation", "r") and permits(granted, "Provenance", "c")
    assert permits(granted, "Device", "d") and permits(granted, "Media", "c")
    assert not permits(granted, "Observation", "u") and not permits(
        ["patient/Observation.read"], "Observation", "c"
    )
    assert missing_write_scopes(["patient/Observation.c"], heatmaps=True) == ["Device", "Provenance", "Media"]
    assert missing_write_scopes(["patient/*.cruds"], heatmaps=True) == []
