"""What differs between sources is data in their SourceSpec: the flow and the answer mapping name no source."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from msi_credential._engine.sources import SPECS
from msi_credential._source import ManagedIdentitySource as S

ENGINE = Path(__file__).resolve().parent.parent / "msi_credential" / "_engine"


@pytest.mark.parametrize(
    "name", ["flow.py", "response.py", "cache.py", "retry.py", "expiry.py", "effects.py"]
)
def test_the_engine_outside_detection_and_sources_names_no_source(name: str) -> None:
    text = (ENGINE / name).read_text(encoding="utf-8")
    assert re.findall(r"ManagedIdentitySource\.[A-Z_]+", text) == []


def test_each_spec_field_belongs_to_the_sources_that_have_it() -> None:
    assert {source for source, spec in SPECS.items() if spec.absence is not None} == {S.IMDS}
    assert {source for source, spec in SPECS.items() if spec.confirm is not None} == {S.AZURE_ARC}
    assert {source for source, spec in SPECS.items() if spec.check is not None} == {S.WORKLOAD_IDENTITY}
    assert {source for source, spec in SPECS.items() if not spec.machine_cache} == {
        S.SERVICE_FABRIC,
        S.WORKLOAD_IDENTITY,
    }
    assert {source for source, spec in SPECS.items() if spec.read_error is not None} == {
        S.IMDS,
        S.APP_SERVICE,
        S.SERVICE_FABRIC,
    }


def test_every_source_has_a_distinct_label() -> None:
    labels = [spec.label for spec in SPECS.values()]
    assert all(labels) and len(set(labels)) == len(labels)


def test_imds_first_contact_fails_fast_except_through_pod_identity() -> None:
    from msi_credential._engine.detection import SourceConfig

    absence = SPECS[S.IMDS].absence
    assert absence is not None
    assert (absence.code, absence.first_connect_timeout) == ("imds_unreachable", 1.0)
    assert absence.fails_fast(SourceConfig(S.IMDS, "http://127.0.0.1:1/t"))
    assert not absence.fails_fast(SourceConfig(S.IMDS, "http://127.0.0.1:1/t", pod_identity=True))
