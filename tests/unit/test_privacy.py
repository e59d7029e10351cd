"""PII scrubbing, row checks and hour keys of the extract, on values and Arrow tables (no database)."""

import datetime as dt
import json

import pyarrow as pa
import pytest

from pipelines.privacy import REDACTED, mask_text, scrub_json
from pipelines.quarantine import split_rows


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("write to jane.doe+x@mail.example.co.uk now", "write to [email] now"),
        ("card 4111 1111 1111 1111 ok", "card [card] ok"),
        ("IBAN DE89370400440532013000", "IBAN [iban]"),
        ("call +1 (415) 555-2671", "call [phone]"),
        ("/goals/42?tab=2", "/goals/42?tab=2"),
        ("app 3.12.1 on 2026-03-01", "app 3.12.1 on 2026-03-01"),
        ("order 1234 5678 9012 3456", "order [phone]"),  # not a valid card number, still 16 digits of a number
    ],
)
def test_mask_text_hides_emails_cards_ibans_and_phones(text, expected):
    assert mask_text(text) == expected


def test_free_text_survives_only_under_allow_listed_keys():
    payload = {"page": "me@x.io", "comment": "hello", "screen": "budget", "nested": {"device": "ios", "memo": "m"},
               "phone": 4155552671, "delta": 25, "tags": ["a", "b"], "ok": True}
    assert json.loads(scrub_json(json.dumps(payload))) == {
        "page": "[email]", "comment": REDACTED, "screen": "budget", "nested": {"device": "ios", "memo": REDACTED},
        "phone": REDACTED, "delta": 25, "tags": [REDACTED, REDACTED], "ok": True,
    }
    assert json.loads(scrub_json('"a bare string with a@b.cd"')) == REDACTED
    assert json.loads(scrub_json('["home", "a@b.cd"]', key="page")) == ["home", "[email]"]  # pages_visited


def test_unknown_users_are_quarantined_and_counts_reconcile():
    end = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    ts = pa.array([end, end, end + dt.timedelta(hours=1)], pa.timestamp("us", "UTC"))
    rows = pa.table({"id": [1, 2, 3], "user_id": [1, 99, 1], "amount": [1.0, 2.0, -3.0], "category": ["a"] * 3,
                     "occurred_at": ts, "updated_at": ts})
    split = split_rows("transactions", rows, pa.array([1], pa.int64()), end)
    assert split.accepted.column("id").to_pylist() == [1]
    assert split.quarantined.column("reason").to_pylist() == ["unknown_user:user_id", "future_timestamp:occurred_at"]
    assert split.counts == {"extracted": 3, "accepted": 1, "quarantined": 2}


def test_an_instant_on_the_hour_belongs_to_the_hour_before_it():
    from pipelines import raw_lake

    on = dt.datetime(2026, 3, 1, 12, tzinfo=dt.UTC)
    assert raw_lake.partition("raw", "t", raw_lake.hour_key(on)) == "raw/t/dt=2026-03-01/hour=11"
    assert raw_lake.hour_key(on + dt.timedelta(microseconds=1)) == raw_lake.hour_key(on) + 1
    ts = pa.array([on, on + dt.timedelta(microseconds=1)], pa.timestamp("us", "UTC"))
    assert raw_lake.row_keys(pa.table({"updated_at": ts})).to_pylist() == [raw_lake.hour_key(on), raw_lake.hour_key(on) + 1]
    assert raw_lake.hour_start(raw_lake.hour_key(on)) == on - dt.timedelta(hours=1)
