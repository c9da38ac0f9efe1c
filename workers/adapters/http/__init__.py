"""The ASGI app of ``callvault serve``: the JSON API of the contract, server-rendered pages,
authentication (sessions, API tokens, OpenID Connect) and security headers."""
