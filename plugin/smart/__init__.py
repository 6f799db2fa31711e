"""SMART App Launch 2.x, the app side: discovery, PKCE authorization, tokens kept server-side.

``discovery`` reads ``{iss}/.well-known/smart-configuration`` (only for allow-listed issuers),
``scopes`` chooses v2 or v1 scopes and reads what was granted, ``oauth`` drives Authlib's client
(authorization URL with PKCE S256, code exchange, refresh) and verifies the ``id_token``,
``store`` keeps each launch Fernet-encrypted in the job store database, ``session`` binds it to
the browser, and ``views`` serves ``/launch`` and the redirect URI ``/smart/callback``.
"""
