"""Schemathesis hooks for scripts/schemathesis: the admin pass's bearer.

Loaded through SCHEMATHESIS_HOOKS. When PORTCULLIS_FUZZ_USER is set, every
request carries a bearer token of that user (scope admin), fetched from
/token, and fetched again whenever an answer is 401 (schemathesis then
replays the request once): the fuzzer itself logs out (POST /logout) and
ends sessions, and those calls are part of the test.

The login is sent with X-Forwarded-For: PORTCULLIS_FUZZ_LOGIN_FROM (the
server trusts 127.0.0.1 as a proxy for the run), so it is counted under an
address of its own: the fuzzer's wrong logins throttle 127.0.0.1 (429), as
they should, without locking the test out of its own token.

The fuzzer never deletes or changes the user whose token it holds: a PATCH
or DELETE of /admin/users/{that name} (any case or width) is sent to a name
no user has instead. Deleting or disabling it would turn the rest of the
pass into 401s, and the server would allow it (another admin, the bootstrap
one, is left).
"""

import os
import unicodedata

import requests
import schemathesis

BASE = os.environ.get("PORTCULLIS_URL", "").rstrip("/")
USER = os.environ.get("PORTCULLIS_FUZZ_USER", "")
PASSWORD = os.environ.get("PORTCULLIS_FUZZ_PASSWORD", "")
LOGIN_FROM = os.environ.get("PORTCULLIS_FUZZ_LOGIN_FROM", "192.0.2.1")


def user_key(name: str) -> str:
    """The server's UserKey: NFKC, full case folding, NFKC again."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", name).casefold())


if USER:

    @schemathesis.auth()
    class AdminBearer:
        def get(self, case, context):
            response = requests.post(
                f"{BASE}/token",
                data={"username": USER, "password": PASSWORD},
                headers={"X-Forwarded-For": LOGIN_FROM},
                timeout=30,
            )
            response.raise_for_status()
            return response.json()["access_token"]

        def set(self, case, data, context):
            case.headers = case.headers or {}
            case.headers["Authorization"] = f"Bearer {data}"

    @schemathesis.hook
    def before_call(context, case, kwargs):
        name = (case.path_parameters or {}).get("username")
        if case.method.upper() in ("PATCH", "DELETE") and isinstance(name, str) and user_key(name) == user_key(USER):
            case.path_parameters["username"] = "no-such-user-" + USER
