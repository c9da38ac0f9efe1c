"""What the HTTP layer derives from callvault's keys: the secret that signs its cookies."""

from __future__ import annotations

import base64

from ...app.ports.keys import Keys
from ...settings import Settings
from ..keys import SESSION_PURPOSE


def session_secret(settings: Settings, keys: Keys) -> bytes:
    """The secret that signs cookies: the configured one, else one derived from callvault's
    keys (so that every server of one deployment agrees without another secret to distribute):
    from the master key held in this process, or, with the keys in a token, an HMAC computed
    in the token under the hash key - the master key there cannot derive anything."""
    if settings.session_secret is not None:
        return settings.session_secret.get_secret_value().encode()
    return base64.b64encode(keys.secret(SESSION_PURPOSE))
