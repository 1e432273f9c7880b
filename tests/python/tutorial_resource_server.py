"""A resource server written exactly as the FastAPI JWT tutorial writes one.

It decodes the bearer token with the shared secret and PyJWT, then reads
`sub`. portcullis promises that its HS256 tokens pass this unchanged (no
`aud` unless configured; the secret's UTF-8 bytes are the key).

Usage: SECRET_KEY=... TOKEN=... python3 tutorial_resource_server.py
Prints the username, or exits non-zero with PyJWT's error.
"""
import os
import sys

import jwt  # PyJWT

SECRET_KEY = os.environ["SECRET_KEY"]
ALGORITHM = "HS256"


def get_current_username(token: str) -> str:
    payload = jwt.decode(token, SECRET_KEY, algorithms=[ALGORITHM])
    username = payload.get("sub")
    if username is None:
        raise SystemExit("token has no sub")
    return username


if __name__ == "__main__":
    try:
        print(get_current_username(os.environ["TOKEN"]))
    except jwt.InvalidTokenError as e:
        print(f"rejected: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
