"""Shadow evaluation: every live decision decided again by a candidate policy set.

`IDGW_SHADOW_POLICY_DIR` names the candidate. It is loaded, tested, hot-reloaded and
gated exactly like the live set (a `LivePolicies` of its own, with its own watcher), but
a candidate that does not load never stops the server: it is reported by
`GET /v1/policies` and tried again at its next change.

For each live decision, `Shadow.outcome` decides the same input with the shadow set,
after the live answer is built: the answer is the same bytes as without a shadow. What
the live request could not give the shadow set (a fact the live purpose did not gather,
a purpose the candidate lacks) makes the outcome `not_replayable`, by the same rules as
`idgw policy replay` (engine.replay), rather than a guess. Agreement is counted in
`policy_shadow_decisions_total{purpose, agreement}` and in this process's counts shown
by `GET /v1/policies`, and the outcome goes into the decision record, where
`idgw policy replay --shadow` reads it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import structlog

from engine import Decision, Purpose
from engine.replay import PurposeReport, Record, Replayer, Report, given_to
from server.metrics import POLICY_SHADOW_DECISIONS, LabelCache
from server.reload import LivePolicies
from stores import DecisionRecord

logger = structlog.get_logger("idgw.shadow")

_shadow_decisions = LabelCache(POLICY_SHADOW_DECISIONS)


class Shadow:
    """The shadow set of one process and the agreement it has counted."""

    def __init__(self, policy_dir: str | Path) -> None:
        self.policies = LivePolicies(policy_dir, counted=False)
        self.agreement: dict[str, Counter[str]] = {}
        self._replayer: Replayer | None = None
        #: (purpose name, live revision) -> what the live purpose gathers: facts, fields
        self._given: dict[tuple[str, str], tuple[frozenset[str], frozenset[str] | None]] = {}

    def load(self) -> None:
        """Load at start; a candidate with errors or failing tests is reported, not fatal."""
        outcome = self.policies.reload(force=True)
        if outcome is not None and outcome.result == "rejected":
            logger.warning("shadow_policies_rejected", policy_dir=str(self.policies.policy_dir), error=outcome.error)

    def _replayer_for(self) -> Replayer | None:
        candidate = self.policies.current
        if candidate is None:
            return None
        replayer = self._replayer
        if replayer is None or replayer.candidate is not candidate:
            replayer = self._replayer = Replayer(candidate)
        return replayer

    def _gathered(self, purpose: Purpose) -> tuple[frozenset[str], frozenset[str] | None]:
        key = (purpose.name, purpose.revision)
        given = self._given.get(key)
        if given is None:
            declared, fields = given_to(purpose)
            given = self._given[key] = (frozenset(declared), frozenset(fields) if fields is not None else None)
        return given

    def outcome(self, purpose: Purpose, facts: Mapping[str, Any], decision: Decision,
                decision_id: str) -> dict[str, object] | None:
        """The shadow set's outcome for the live decision of `purpose` on `facts`, counted;
        None without a loaded shadow set. Never raises: the live answer does not depend on it."""
        try:
            replayer = self._replayer_for()
            if replayer is None:
                return None
            declared, fields = self._gathered(purpose)
            context = facts.get("context")
            record = Record(
                decision_id, purpose.name, facts, context if isinstance(context, dict) else {},
                decision.status, decision.reason, declared=declared, fields=fields,
            )
            result = replayer.decide(record)
        except Exception:  # a defect of the shadow path must not reach the live answer
            logger.exception("shadow_evaluation_failed", purpose=purpose.name)
            return None
        shadow: dict[str, object] = {"revision": replayer.candidate.revision}
        if isinstance(result, list):
            agreement = "not_replayable"
            shadow["why"] = result
        else:
            agreement = "same" if result == (decision.status, decision.reason) else "different"
            shadow["status"], shadow["reason"] = result
        shadow["agreement"] = agreement
        _shadow_decisions(purpose.name, agreement)[0].inc()
        counts = self.agreement.get(purpose.name)
        if counts is None:
            counts = self.agreement[purpose.name] = Counter()
        counts[agreement] += 1
        return shadow

    def status(self) -> dict[str, Any]:
        """What `GET /v1/policies` reports under `shadow`."""
        live = self.policies.status()
        return {
            "revision": live["revision"],
            "loaded_at": live["loaded_at"],
            "policy_dir": live["policy_dir"],
            "last_reload": live["last_reload"],
            "reloads": live["reloads"],
            "agreement": {
                name: {kind: counts[kind] for kind in ("same", "different", "not_replayable")}
                for name, counts in sorted(self.agreement.items())
            },
        }


def count_shadow(report: Report, record: DecisionRecord) -> None:
    """Add a stored record's shadow outcome to `report` as a replay of the shadow set
    would count it (records without one are left out; the latest revision names it)."""
    shadow = record.body.get("shadow")
    if not isinstance(shadow, dict):
        return
    report.candidate_revision = str(shadow.get("revision") or report.candidate_revision)
    purpose = report.purposes.setdefault(record.purpose, PurposeReport())
    if shadow.get("agreement") == "not_replayable":
        purpose.not_replayable.update(str(why) for why in shadow.get("why") or ["unknown"])
        return
    after = (str(shadow.get("status")), str(shadow.get("reason")))
    purpose.count(record.decision_id, (record.status, record.reason), after)


__all__ = ["Shadow", "count_shadow"]
