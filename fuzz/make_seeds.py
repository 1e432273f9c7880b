#!/usr/bin/env python3
"""Writes the hand-made seeds of fuzz/corpus/<target>/seed-*: real tokens
(signed with the keys in fuzz_targets/verifiers.rs), real token-endpoint
forms, real password hashes and import files. Needs pyjwt[crypto] and
bcrypt (scripts/test installs both). Only these are committed: what the
fuzzers find stays outside the work tree (see scripts/fuzz)."""

import base64
import hashlib
import hmac
import json
import pathlib

import bcrypt
import jwt
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

CORPUS = pathlib.Path(__file__).resolve().parent / "corpus"
SECRET = b"portcullis fuzz secret: 32 bytes or more, not a real one"
ISSUER = "http://127.0.0.1:8000"
NOW = 1_800_000_000


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


SHARED_KID = "hs256-" + hashlib.sha256(b"portcullis kid\0" + SECRET).digest()[:8].hex()
# RFC 8037 A.1's Ed25519 key and a fixed P-256 test key: the verifiers
# hold the public halves.
ED_KEY = ed25519.Ed25519PrivateKey.from_private_bytes(unb64("nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"))
ES_KEY = ec.derive_private_key(int.from_bytes(unb64("jpsQnnGQmL-YBIffH1136cMYMYWSnKzEa7YHG3XL3FQ"), "big"), ec.SECP256R1())

# The public halves verifiers.rs holds: the tokens below verify there.
_rs = (pathlib.Path(__file__).resolve().parent / "fuzz_targets" / "verifiers.rs").read_text()
_ed_x = b64(ED_KEY.public_key().public_bytes_raw())
_es = ES_KEY.public_key().public_numbers()
for _part in [_ed_x, b64(_es.x.to_bytes(32, "big")), b64(_es.y.to_bytes(32, "big")), SECRET.decode()]:
    assert f'"{_part}"' in _rs, f"{_part} is not in verifiers.rs"

CLAIMS = {
    "iss": ISSUER, "sub": "johndoe", "exp": NOW + 900, "iat": NOW, "nbf": NOW,
    "jti": "0123456789abcdef0123456789abcdef", "scope": "items me", "sid": "fedcba9876543210",
}
SERVER_HEADER = {"alg": "HS256", "typ": "at+jwt", "kid": SHARED_KID}


def token(claims=CLAIMS, key=SECRET, alg="HS256", **header) -> str:
    headers = {"typ": "at+jwt", "kid": SHARED_KID} if alg == "HS256" else {"typ": "at+jwt"}
    headers.update(header)
    return jwt.encode(claims, key, algorithm=alg, headers={k: v for k, v in headers.items() if v is not None})


def es256(claims=CLAIMS, **header) -> str:
    """ES256 with RFC 6979 nonces: the same seed every run."""
    headers = json.dumps({"alg": "ES256", "typ": "at+jwt", **header}, separators=(",", ":"))
    signing_input = f"{b64(headers.encode())}.{b64(json.dumps(claims, separators=(',', ':')).encode())}"
    der = ES_KEY.sign(signing_input.encode(), ec.ECDSA(hashes.SHA256(), deterministic_signing=True))
    r, s = decode_dss_signature(der)
    return f"{signing_input}.{b64(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"


def hs256_raw(header: bytes, claims: bytes) -> str:
    signing_input = f"{b64(header)}.{b64(claims)}"
    tag = hmac.new(SECRET, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(tag)}"


def write(target: str, seeds: list) -> None:
    folder = CORPUS / target
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("seed-*"):
        old.unlink()
    for i, seed in enumerate(seeds):
        (folder / f"seed-{i:02}").write_bytes(seed if isinstance(seed, bytes) else seed.encode())


good = token()
write("verify_token", [
    good,
    "Bearer " + good,
    "bearer  " + good + " ",
    token({**CLAIMS, "aud": ["other-api", "api"]}),
    token({**CLAIMS, "aud": "api", "exp": NOW + 4000}),
    token(key=ED_KEY, alg="EdDSA", kid="ed-1"),
    es256(kid="es-1"),
    token(key=ED_KEY, alg="EdDSA", kid=None, typ="application/at+jwt"),
    token({**CLAIMS, "exp": NOW - 10}),
    token(crit=["exp"]),
    token(typ="JWT"),
    token(kid="es-1"),
    hs256_raw(b'{"alg":"none","typ":"at+jwt"}', json.dumps(CLAIMS).encode()).rsplit(".", 1)[0] + ".",
    good.rsplit(".", 1)[0] + ".AAAA",
    "a.b.c",
    "..",
])

server_claims = json.dumps(CLAIMS, separators=(",", ":"))
write("verify_token_signed", [
    "0" + server_claims,
    "0" + json.dumps({**CLAIMS, "aud": ["api"], "exp": NOW + 60}),
    "0" + json.dumps({**CLAIMS, "aud": "api", "roles": {"a": [1, 2.5, None, True]}, "name": "Zoë \u202e"}),
    "0" + json.dumps({**CLAIMS, "exp": 9223372036854775807, "iat": -9223372036854775808}),
    "0" + json.dumps({**CLAIMS, "exp": 1.8e9, "scope": ["me"]}),
    "0" + json.dumps({k: v for k, v in CLAIMS.items() if k != "scope"}),
    "0" + '{"iss":"http://127.0.0.1:8000","sub":"a","sub":"b"}',
    "1" + '{"alg":"HS256","typ":"at+jwt"}\n' + server_claims,
    "1" + json.dumps({**SERVER_HEADER, "crit": ["b64"], "b64": False}) + "\n" + server_claims,
    "1" + json.dumps({**SERVER_HEADER, "typ": "application/AT+JWT", "jku": "https://x", "x5c": ["AA"]}) + "\n" + server_claims,
    "1" + json.dumps({**SERVER_HEADER, "alg": "EdDSA"}) + "\n" + server_claims,
])

multipart = (
    "--XfuzzX\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\njohndoe\r\n"
    "--XfuzzX\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nsecret\r\n"
    "--XfuzzX--\r\n"
)
# The selector byte (see fuzz_targets/token_form.rs): '@' urlencoded to
# /token, 'A' multipart (boundary XfuzzX), 'B' multipart with the boundary on
# the first line, 'C' the Content-Type on the first line, 'D' /login,
# 'H' /token/revoke, 'L' /token/introspect, 'P' a query line first.
write("token_form", [
    "@grant_type=password&username=johndoe&password=secret",
    "@grant_type=&username=al%C3%A9+x&password=p%26w&scope=me+items&client_id=&client_secret=",
    "@grant_type=refresh_token&refresh_token=UbX7yGRk0MB3fIr4YpJh2iS9vQmNwK5t&scope=me",
    "@grant_type=client_credentials&username=a&username=b",
    "@username=%FF&password=%zz",
    "A" + multipart,
    "B" + "a'()+_,-./:=? b\n" + multipart.replace("XfuzzX", "a'()+_,-./:=? b"),
    "C" + 'Multipart/Form-Data; boundary="XfuzzX"; charset=utf-8\n' + multipart,
    "C" + "application/json\n" + '{"username":"johndoe","password":"secret"}',
    "C" + "text/plain\nusername=johndoe",
    "D" + "username=johndoe&password=secret",
    "H" + "token=" + good + "&token_type_hint=access_token",
    "L" + "token=" + good,
    "P" + "pass%77ord=x&next=/\n" + "username=johndoe",
    "E" + multipart.replace("secret", "se\u00e9cret"),
])

tutorial = "$2b$12$EixZaYVK1fsbw1ZfbX3OXePaWxn96p36WQoeG6Lruj3vjPGga31lW"
cheap = bcrypt.hashpw(b"secret", b"$2b$04$portcullisfuzzseedsalu").decode()  # a fixed salt: same seeds each run
# Made with the argon2 crate portcullis uses, password "secret".
ARGON2 = [
    "$argon2id$v=19$m=19456,t=2,p=1$cG9ydGN1bGxpcy1mdXp6IQ$7ylGrx9JvcqE5sYByKs/oVuRDZFZMlGSrw5bOJ01T5I",
    "$argon2id$v=19$m=64,t=1,p=1$cG9ydGN1bGxpcy1mdXp6IQ$EAadf/M4a1XMiQF9ighRR04hQv3x8AknyJJa3gY3Ii8",
    "$argon2i$v=19$m=256,t=2,p=2$cG9ydGN1bGxpcy1mdXp6IQ$oC3Vj98Kyj86Zm1jbDrfw2pSsGwfXnymMSkAwtzbpMc",
    "$argon2d$v=16$m=128,t=3,p=1$cG9ydGN1bGxpcy1mdXp6IQ$hJI2OdVdkkWTtcfT/MoQUMiNXGfJnvwl8xj+1SJbLaw",
]
write("stored_hash", [
    tutorial,
    cheap,
    "$2a$" + cheap[4:],
    "$2y$" + cheap[4:],
    "$2b$31" + cheap[6:],
    "$2b$12$short",
    *ARGON2,
    "$argon2id$v=19$m=4194304,t=1,p=1$c29tZXNhbHRzb21lc2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g",
    "$argon2id$v=19$m=1$x$y",
    "$scrypt$ln=16,r=8,p=1$aM15713r3Xsvxbi31lqr1Q$nFNh2CVHVjNldFVKDHDlm4CbdRSCdEBsjjJxD+iCs5E",
    "$1$md5$crypt",
    json.dumps({
        "johndoe": {"username": "johndoe", "full_name": "John Doe", "email": "johndoe@example.com",
                    "hashed_password": tutorial, "disabled": False},
        "alice": {"username": "Ａｌｉｃｅ", "hashed_password": ARGON2[1], "disabled": True},
    }, indent=4, ensure_ascii=False),
    json.dumps({"bob": {"username": "bob:x", "hashed_password": cheap}}),
    "Ｊｏｈｎ_Ｄｏｅ",
])
