"""First come, first served needs the real creation order: the bridge's microsecond stamp
wins over the whole-second creationTimestamp, and a hand-edited stamp cannot break it."""

from __future__ import annotations

import datetime as dt

from datatx_operator import api


def test_the_created_annotation_orders_transfers_within_one_second() -> None:
    first = {
        "creationTimestamp": "2026-12-04T10:00:00Z",
        "annotations": {api.ANNOTATION_CREATED: "2026-12-04T10:00:00.900000+00:00"},
    }
    second = {
        "creationTimestamp": "2026-12-04T10:00:00Z",
        "annotations": {api.ANNOTATION_CREATED: "2026-12-04T10:00:00.100000+00:00"},
    }
    assert api.created_at(second) < api.created_at(first)
    assert api.created_at(first).microsecond == 900_000


def test_a_bad_or_missing_stamp_falls_back_to_the_creation_timestamp() -> None:
    created = dt.datetime(2026, 12, 4, 10, 0, tzinfo=dt.UTC)
    for stamps in ({}, {api.ANNOTATION_CREATED: "yesterday"}, None):
        metadata = {"creationTimestamp": "2026-12-04T10:00:00Z", "annotations": stamps}
        assert api.created_at(metadata) == created
    naive = {"annotations": {api.ANNOTATION_CREATED: "2026-12-04T10:00:00"}}
    assert api.created_at(naive) == created  # a time without a zone is UTC
    assert api.created_at({}) == api.EPOCH
