"""Logged interactions (app ids) meet the users of a lake snapshot (pseudonyms) for OPE and pretraining."""

import pandas as pd

from fincoach.pseudonym import pseudonymise_many
from training.offline import match_interactions
from training.sample_users import sample_snapshot


def test_logged_app_ids_match_a_pseudonymised_snapshot_and_counts_reconcile():
    snapshot = sample_snapshot(5, 1)
    ids = snapshot["user_id"].tolist()
    pseudonymised = snapshot.assign(user_id=pseudonymise_many(ids))
    log = pd.DataFrame({"user_id": [ids[0], ids[1], 999_999], "action_id": [1, 2, 3]})
    for frame in (snapshot, pseudonymised):
        rows, raw, counts = match_interactions(log, frame)
        assert counts == {"logged": 3, "rejected_unknown_action": 0, "rejected_user_not_in_snapshot": 1}
        assert len(rows) == len(raw) == 2
