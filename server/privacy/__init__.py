"""Data rights (docs/api.md, docs/audit.md): the caller's export and the caller's erasure.

    routes        GET /me/data-export, DELETE /me
    service       export_data (profile, consents, credentials, audit events by
                  subject_ref), erase_user (revoke, delete in one transaction, evict
                  cached registry answers, audit)
"""

from __future__ import annotations

from server.privacy.routes import routes
from server.privacy.service import DATA_DELETED, DATA_EXPORTED, erase_user, export_data

__all__ = ["DATA_DELETED", "DATA_EXPORTED", "erase_user", "export_data", "routes"]
