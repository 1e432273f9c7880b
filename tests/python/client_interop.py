"""Third-party OAuth clients against a running portcullis: the
client_credentials grant as Authlib (requests and httpx) sends it, tokens
verified by PyJWT, introspection, and the error a wrong secret gets.

Usage: BASE_URL=http://127.0.0.1:PORT CLIENT_ID=... CLIENT_SECRET=... \
       ALGORITHM=HS256|EdDSA SECRET_KEY=... (HS256 only) \
       [ODD_CLIENT_ID=... ODD_CLIENT_SECRET=...] python3 client_interop.py
CLIENT_ID must hold the scopes "read introspect"; ODD_CLIENT_ID (optional)
holds "read" and has characters that RFC 6749 §2.3.1 form-encodes.

Prints one line per check; exits non-zero at the first failure.

Authlib (1.x) does not form-encode the id and secret inside Basic: it
base64s `id:secret` as Latin-1. An id with `+`, `%XX` or non-ASCII therefore
fails with its stock `client_secret_basic` (portcullis's generated secrets
are URL-safe base64 and need no encoding); the odd-id checks use a
§2.3.1 Basic method registered with Authlib, and report what the stock one
got without failing on it.
"""
import asyncio
import base64
import contextlib
import os
import sys
import traceback
import warnings
from urllib.parse import quote_plus

import jwt  # PyJWT with the `cryptography` extra
import requests
import authlib.deprecate  # noqa: F401 — sets its warnings to "always"; the filter below goes first

# Authlib 1.9 asks httpx users to move to the `httpx2` package; noise here.
warnings.filterwarnings("ignore", message="The httpx module is deprecated")
from authlib.common.errors import AuthlibBaseError
from authlib.integrations.httpx_client import AsyncOAuth2Client
from authlib.integrations.requests_client import OAuth2Session, OAuthError

os.environ.setdefault("NO_PROXY", "*")  # PyJWKClient goes through urllib
for stream in (sys.stdout, sys.stderr):  # odd ids print under any locale
    stream.reconfigure(errors="backslashreplace")

BASE_URL = os.environ["BASE_URL"].rstrip("/")
TOKEN_URL = BASE_URL + "/token"
CLIENT_ID = os.environ["CLIENT_ID"]
CLIENT_SECRET = os.environ["CLIENT_SECRET"]
ALGORITHM = os.environ["ALGORITHM"]
SECRET_KEY = os.environ.get("SECRET_KEY", "")
ODD_CLIENT_ID = os.environ.get("ODD_CLIENT_ID", "")
ODD_CLIENT_SECRET = os.environ.get("ODD_CLIENT_SECRET", "")
METHODS = ("client_secret_basic", "client_secret_post")


class CheckFailed(Exception):
    pass


def ok(what):
    print(f"ok: {what}", flush=True)


def expect(condition, what):
    if not condition:
        raise CheckFailed(what)


@contextlib.contextmanager
def must_succeed(label):
    """An OAuth error inside is a failure of `label`, said with the server's words."""
    try:
        yield
    except OAuthError as e:
        raise CheckFailed(f"{label}: refused: {e.error}: {e.description}") from e


def basic_rfc6749(client, method, uri, headers, body):
    """client_secret_basic as RFC 6749 §2.3.1 says: id and secret each
    application/x-www-form-urlencoded (UTF-8), then joined and base64'd."""
    text = f"{quote_plus(client.client_id)}:{quote_plus(client.client_secret)}"
    headers["Authorization"] = "Basic " + base64.b64encode(text.encode("ascii")).decode("ascii")
    return uri, headers, body


def check_token_response(token, label):
    expect(str(token.get("token_type", "")).lower() == "bearer", f"{label}: token_type is {token.get('token_type')!r}")
    expect(token.get("scope") == "read", f"{label}: scope is {token.get('scope')!r}, not 'read'")
    expect("refresh_token" not in token, f"{label}: a client_credentials answer carries a refresh_token")
    expect(isinstance(token.get("expires_in"), int) and token["expires_in"] > 0,
           f"{label}: expires_in is {token.get('expires_in')!r}")
    expect(isinstance(token.get("access_token"), str) and token["access_token"], f"{label}: no access_token")
    ok(f"{label}: token_type bearer, scope 'read', expires_in {token['expires_in']}, no refresh_token")


_jwks_client = None


def verify_with_pyjwt(access_token, client_id, label):
    """PyJWT, as a resource server would call it (no audience configured)."""
    global _jwks_client
    options = {"require": ["exp", "iat", "nbf", "sub", "jti", "iss"]}
    try:
        if ALGORITHM == "HS256":
            expect(SECRET_KEY, "ALGORITHM is HS256 but SECRET_KEY is empty")
            claims = jwt.decode(access_token, SECRET_KEY, algorithms=["HS256"], options=options)
        elif ALGORITHM == "EdDSA":
            if _jwks_client is None:
                _jwks_client = jwt.PyJWKClient(BASE_URL + "/.well-known/jwks.json", cache_keys=False)
            key = _jwks_client.get_signing_key_from_jwt(access_token).key
            claims = jwt.decode(access_token, key, algorithms=["EdDSA"], options=options)
        else:
            raise CheckFailed(f"ALGORITHM must be HS256 or EdDSA, not {ALGORITHM!r}")
    except jwt.PyJWTError as e:
        raise CheckFailed(f"{label}: PyJWT refused the token: {type(e).__name__}: {e}") from e
    header = jwt.get_unverified_header(access_token)
    expect(header.get("alg") == ALGORITHM, f"{label}: header alg is {header.get('alg')!r}")
    expect(header.get("typ") == "at+jwt", f"{label}: header typ is {header.get('typ')!r}, not 'at+jwt'")
    expect(claims["sub"] == client_id, f"{label}: sub is {claims['sub']!r}, not {client_id!r}")
    expect(claims.get("client_id") == client_id, f"{label}: client_id is {claims.get('client_id')!r}")
    expect(claims.get("scope") == "read", f"{label}: scope claim is {claims.get('scope')!r}")
    ok(f"{label}: PyJWT verifies it ({ALGORITHM}), typ at+jwt, sub = client_id = {client_id!r}, scope 'read'")
    return claims


def expect_invalid_client(error, label):
    expect(getattr(error, "error", None) == "invalid_client",
           f"{label}: expected invalid_client, got {type(error).__name__}: {error}")
    ok(f"{label}: Authlib raised {type(error).__name__} with error invalid_client")


def fetch_sync(client_id, secret, method, register=None):
    with OAuth2Session(client_id, secret, token_endpoint_auth_method=method) as session:
        session.trust_env = False
        if register:
            session.register_client_auth_method(register)
        return session.fetch_token(TOKEN_URL, grant_type="client_credentials", scope="read")


async def fetch_async(client_id, secret, method):
    async with AsyncOAuth2Client(client_id, secret, token_endpoint_auth_method=method, trust_env=False) as client:
        return await client.fetch_token(TOKEN_URL, grant_type="client_credentials", scope="read")


def sync_checks():
    tokens = []
    for method in METHODS:
        label = f"Authlib OAuth2Session {method}"
        with must_succeed(label):
            token = fetch_sync(CLIENT_ID, CLIENT_SECRET, method)
        check_token_response(token, label)
        verify_with_pyjwt(token["access_token"], CLIENT_ID, label)
        tokens.append(token["access_token"])
    return tokens


async def async_checks():
    tokens = []
    for method in METHODS:
        label = f"Authlib AsyncOAuth2Client {method}"
        with must_succeed(label):
            token = await fetch_async(CLIENT_ID, CLIENT_SECRET, method)
        check_token_response(token, label)
        verify_with_pyjwt(token["access_token"], CLIENT_ID, label)
        tokens.append(token["access_token"])
    return tokens


def introspection_checks(token):
    label = "introspection (Authlib introspect_token, client_secret_basic)"
    with OAuth2Session(CLIENT_ID, CLIENT_SECRET, token_endpoint_auth_method="client_secret_basic") as session:
        session.trust_env = False
        response = session.introspect_token(BASE_URL + "/token/introspect", token=token)
    expect(response.status_code == 200, f"{label}: HTTP {response.status_code}: {response.text}")
    body = response.json()
    expect(body.get("active") is True, f"{label}: active is {body.get('active')!r}: {body}")
    expect(body.get("client_id") == CLIENT_ID, f"{label}: client_id is {body.get('client_id')!r}")
    expect(body.get("sub") == CLIENT_ID, f"{label}: sub is {body.get('sub')!r}")
    expect(body.get("scope") == "read", f"{label}: scope is {body.get('scope')!r}")
    expect("username" not in body, f"{label}: a client's token names a username: {body}")
    ok(f"{label}: active, client_id {CLIENT_ID!r}, scope 'read'")

    label = "introspection (requests HTTPBasicAuth)"
    response = requests.post(BASE_URL + "/token/introspect", data={"token": token},
                             auth=requests.auth.HTTPBasicAuth(CLIENT_ID, CLIENT_SECRET),
                             proxies={"http": None, "https": None})
    expect(response.status_code == 200 and response.json().get("active") is True,
           f"{label}: HTTP {response.status_code}: {response.text}")
    ok(f"{label}: active")


def odd_id_checks():
    if not ODD_CLIENT_ID:
        print("skip: ODD_CLIENT_ID is not set", flush=True)
        return
    expect(ODD_CLIENT_SECRET, "ODD_CLIENT_ID is set but ODD_CLIENT_SECRET is not")
    shown = ascii(ODD_CLIENT_ID)

    label = f"odd id {shown} with a §2.3.1 client_secret_basic registered with Authlib"
    with must_succeed(label):
        token = fetch_sync(ODD_CLIENT_ID, ODD_CLIENT_SECRET, "client_secret_basic_rfc6749",
                           register=("client_secret_basic_rfc6749", basic_rfc6749))
    check_token_response(token, label)
    verify_with_pyjwt(token["access_token"], ODD_CLIENT_ID, label)

    label = f"odd id {shown} with Authlib client_secret_post"
    with must_succeed(label):
        token = fetch_sync(ODD_CLIENT_ID, ODD_CLIENT_SECRET, "client_secret_post")
    check_token_response(token, label)
    verify_with_pyjwt(token["access_token"], ODD_CLIENT_ID, label)

    # Authlib's own Basic sends the id unencoded (Latin-1): noted, not
    # failed on, unless the server answers with anything but a token or a
    # clean invalid_client.
    label = f"odd id {shown} with Authlib's stock client_secret_basic"
    try:
        token = fetch_sync(ODD_CLIENT_ID, ODD_CLIENT_SECRET, "client_secret_basic")
        check_token_response(token, label)
        print(f"note: {label}: accepted", flush=True)
    except UnicodeEncodeError as e:
        print(f"note: {label}: Authlib cannot send it at all (Latin-1): {e}", flush=True)
    except OAuthError as e:
        expect(e.error == "invalid_client", f"{label}: expected a token or invalid_client, got {e.error}: {e}")
        print(f"note: {label}: refused with invalid_client ({e.description}) — "
              "Authlib does not form-encode Basic credentials (RFC 6749 §2.3.1)", flush=True)


def wrong_secret_checks():
    # Last: failures count towards the throttle of CLIENT_ID.
    wrong = CLIENT_SECRET[::-1] if CLIENT_SECRET[::-1] != CLIENT_SECRET else CLIENT_SECRET + "x"
    try:
        fetch_sync(CLIENT_ID, wrong, "client_secret_basic")
    except OAuthError as e:
        expect_invalid_client(e, "wrong secret, OAuth2Session client_secret_basic")
    else:
        raise CheckFailed("wrong secret, OAuth2Session client_secret_basic: a token was issued")

    async def wrong_async():
        try:
            await fetch_async(CLIENT_ID, wrong, "client_secret_post")
        except OAuthError as e:
            expect_invalid_client(e, "wrong secret, AsyncOAuth2Client client_secret_post")
        else:
            raise CheckFailed("wrong secret, AsyncOAuth2Client client_secret_post: a token was issued")

    asyncio.run(wrong_async())


def main():
    tokens = sync_checks()
    tokens += asyncio.run(async_checks())
    expect(len(set(tokens)) == len(tokens), "two fetches gave the same access token")
    introspection_checks(tokens[0])
    odd_id_checks()
    wrong_secret_checks()
    print("all checks passed", flush=True)


if __name__ == "__main__":
    try:
        main()
    except CheckFailed as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
    except AuthlibBaseError as e:
        print(f"FAILED: Authlib raised {type(e).__name__}: error={e.error!r} description={e.description!r}",
              file=sys.stderr)
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 — any surprise is a failure, said plainly
        traceback.print_exc()
        print(f"FAILED: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
