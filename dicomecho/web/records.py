# -*- test-case-name: tests.test_webrender -*-
"""
A record as JSON (C{/api/associations}): the same facts the page shows,
for scripts. Pure.
"""

from __future__ import annotations

import time
from typing import Any

from dicomecho.association.negotiation import Acceptance
from dicomecho.observability.history import AssociationRecord
from dicomecho.web.render import productText

__all__ = ["recordJSON"]


def _contexts(record: AssociationRecord) -> list[dict[str, Any]]:
    """Each proposed context with its result (PS3.8 Table 9-18), if answered."""
    rq = record.request
    if rq is None:
        return []
    answer = record.answer
    results = (
        {pc.contextID: pc for pc in answer.ac.presentationContexts}
        if isinstance(answer, Acceptance)
        else {}
    )
    out = []
    for pc in rq.presentationContexts:
        result = results.get(pc.contextID)
        out.append(
            {
                "id": pc.contextID,
                "abstractSyntax": pc.abstractSyntax,
                "proposedTransferSyntaxes": list(pc.transferSyntaxes),
                "result": result.result if result is not None else None,
                "transferSyntax": (
                    result.transferSyntax if result is not None and result.result == 0 else None
                ),
            }
        )
    return out


def recordJSON(record: AssociationRecord) -> dict[str, Any]:
    """The record as a JSON object."""
    uid, version = record.implementation
    return {
        "number": record.number,
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.startedAt)),
        "startedAt": record.startedAt,
        "peer": record.peer,
        "callingAETitle": record.callingAETitle,
        "calledAETitle": record.calledAETitle,
        "implementationClassUID": uid,
        "implementationVersionName": version,
        "product": productText(record) or None,
        "tls": {k: v for k, v in record.tls.items() if v},
        "user": record.user,
        "contexts": _contexts(record),
        "outcome": record.outcome.value,
        "category": record.category.value,
        "reason": record.reason,
        "rejection": list(record.rejection) if record.rejection else None,
        "connections": record.connections,
        "durationSeconds": round(record.durationSeconds, 6),
        "messages": record.messages,
        "hint": record.hint,
    }
