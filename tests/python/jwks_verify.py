"""An independent verifier: PyJWT's PyJWKClient fetches portcullis's JWKS,
picks the key by `kid`, and verifies the token.

Usage: JWKS_URL=... TOKEN=... ALG=EdDSA|ES256|RS256 ISSUER=... python3 jwks_verify.py
Prints `sub`, or exits non-zero with PyJWT's error.
"""
import os
import sys

import jwt  # PyJWT with the `cryptography` extra

token = os.environ["TOKEN"]
try:
    client = jwt.PyJWKClient(os.environ["JWKS_URL"], cache_keys=False)
    signing_key = client.get_signing_key_from_jwt(token)
    payload = jwt.decode(
        token,
        signing_key.key,
        algorithms=[os.environ["ALG"]],
        issuer=os.environ["ISSUER"],
        options={"require": ["exp", "iat", "sub", "jti"]},
    )
except jwt.PyJWTError as e:
    print(f"rejected: {type(e).__name__}: {e}", file=sys.stderr)
    sys.exit(1)
print(payload["sub"])
