"""Verifiable credentials: `AgeOver18` issued from a citizen registry check, stored,
returned as JSON and as a signed VC-JWT, verifiable by id or JWT, revocable by its holder.

    routes             POST /vc/issue, POST /vc/verify, POST /vc/revoke
    CredentialService  made by create_app as `app.state.credentials`
"""

from __future__ import annotations

from server.credentials.routes import routes
from server.credentials.service import (
    AGE_OVER_18,
    CredentialService,
    IssuedCredential,
    Verification,
)

__all__ = ["AGE_OVER_18", "CredentialService", "IssuedCredential", "Verification", "routes"]
