"""Authentication: API keys and JWTs (HS256, RS256) into identities, and every way a token is refused."""

from __future__ import annotations

import hashlib
import hmac
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from gateway.auth import Authenticator, generate_api_key, hash_api_key, looks_like_jwt
from gateway.config import ApiKey, AuthConfig, JwtConfig
from gateway.errors import Unauthorized
from gateway.identity import LOCAL_OWNER, Role

SECRET = "s" * 48
ISSUER = "https://issuer.example"
AUDIENCE = "gateway"
ENV = {"GW_JWT_SECRET": SECRET}


def hs_config(**overrides: Any) -> AuthConfig:
    jwt_config = JwtConfig(
        algorithms=["HS256"], secret_env="GW_JWT_SECRET", issuer=ISSUER, audience=AUDIENCE, **overrides
    )
    return AuthConfig(jwt=jwt_config)


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": now, "exp": now + 300}
    base.update(overrides)
    return {key: value for key, value in base.items() if value is not None}


def hs_token(secret: str = SECRET, **overrides: Any) -> str:
    return jwt.encode(claims(**overrides), secret, algorithm="HS256")


def reason(auth: Authenticator, header: str | None) -> str:
    with pytest.raises(Unauthorized) as info:
        auth.authenticate(header)
    return info.value.message


@pytest.fixture(scope="module")
def rsa_private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture
def rs_public_pem(tmp_path: Path, rsa_private_key: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "jwt-public.pem"
    path.write_bytes(
        rsa_private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


# --- helpers --------------------------------------------------------------------------------------------


def test_hash_api_key_is_prefixed_sha256_hex_and_valid_in_config() -> None:
    digest = hash_api_key("gw_abc")
    assert digest == "sha256:" + hashlib.sha256(b"gw_abc").hexdigest()
    ApiKey(name="ci", hash=digest)  # the config model accepts it


def test_generated_api_keys_are_prefixed_random_and_not_jwt_shaped() -> None:
    keys = {generate_api_key() for _ in range(50)}
    assert len(keys) == 50
    assert all(key.startswith("gw_") and len(key) >= 40 for key in keys)
    assert not any(looks_like_jwt(key) for key in keys)


# --- no auth and header handling --------------------------------------------------------------------------


def test_without_auth_config_everyone_is_the_local_owner() -> None:
    auth = Authenticator(AuthConfig())
    assert not auth.enabled
    assert auth.authenticate(None) is LOCAL_OWNER
    assert auth.authenticate("Bearer whatever") is LOCAL_OWNER


@pytest.fixture
def key_auth() -> tuple[Authenticator, str, str]:
    admin_key, ci_key = generate_api_key(), generate_api_key()
    config = AuthConfig(
        api_keys=[
            ApiKey(name="admin", hash=hash_api_key(admin_key), roles=["member", "admin"]),
            ApiKey(name="ci", hash=hash_api_key(ci_key)),
        ]
    )
    return Authenticator(config), admin_key, ci_key


def test_missing_header_is_unauthorized(key_auth: tuple[Authenticator, str, str]) -> None:
    auth, _, _ = key_auth
    assert auth.enabled
    assert reason(auth, None) == "missing bearer token"
    assert reason(auth, "   ") == "missing bearer token"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer a b", "token", "Bearer\ta\tb"])
def test_header_that_is_not_bearer_token_is_unauthorized(key_auth: tuple[Authenticator, str, str], header: str) -> None:
    auth, _, _ = key_auth
    assert "Bearer <token>" in reason(auth, header)


def test_oversized_header_is_refused_without_parsing(key_auth: tuple[Authenticator, str, str]) -> None:
    auth, _, _ = key_auth
    assert reason(auth, "Bearer " + "a" * 100_000) == "bearer token too long"


def test_wrong_api_key_is_unauthorized_and_not_echoed(key_auth: tuple[Authenticator, str, str]) -> None:
    auth, _, _ = key_auth
    wrong = generate_api_key()
    message = reason(auth, f"Bearer {wrong}")
    assert message == "invalid bearer token"
    assert wrong not in message


def test_good_api_keys_map_to_named_identities_with_highest_role(
    key_auth: tuple[Authenticator, str, str],
) -> None:
    auth, admin_key, ci_key = key_auth
    admin = auth.authenticate(f"Bearer {admin_key}")
    assert (admin.subject, admin.method, admin.role) == ("key:admin", "api_key", Role.ADMIN)
    assert admin.authenticated
    ci = auth.authenticate(f"bearer {ci_key}")  # the scheme is case-insensitive (RFC 9110)
    assert (ci.subject, ci.method, ci.role) == ("key:ci", "api_key", Role.MEMBER)


def test_jwt_is_not_accepted_when_only_api_keys_are_configured(
    key_auth: tuple[Authenticator, str, str],
) -> None:
    auth, _, _ = key_auth
    assert reason(auth, f"Bearer {hs_token()}") == "invalid bearer token"


# --- JWT HS256 --------------------------------------------------------------------------------------------


def test_hs256_good_token_gives_jwt_identity_with_claims() -> None:
    auth = Authenticator(hs_config(), ENV)
    identity = auth.authenticate(f"Bearer {hs_token()}")
    assert identity.subject == "jwt:alice"
    assert identity.method == "jwt"
    assert identity.role == Role.MEMBER  # no roles claim: the default
    assert identity.claims["iss"] == ISSUER
    assert identity.claims["aud"] == AUDIENCE


def test_api_keys_and_jwt_work_side_by_side() -> None:
    key = generate_api_key()
    config = AuthConfig(api_keys=[ApiKey(name="ci", hash=hash_api_key(key))], jwt=hs_config().jwt)
    auth = Authenticator(config, ENV)
    assert auth.authenticate(f"Bearer {key}").method == "api_key"
    assert auth.authenticate(f"Bearer {hs_token()}").method == "jwt"


def test_hs256_expired_token() -> None:
    auth = Authenticator(hs_config(), ENV)
    token = hs_token(iat=int(time.time()) - 600, exp=int(time.time()) - 60)
    assert reason(auth, f"Bearer {token}") == "token expired"


def test_leeway_accepts_recently_expired_token() -> None:
    auth = Authenticator(hs_config(leeway_seconds=120), ENV)
    token = hs_token(iat=int(time.time()) - 600, exp=int(time.time()) - 60)
    assert auth.authenticate(f"Bearer {token}").subject == "jwt:alice"


def test_hs256_wrong_audience() -> None:
    auth = Authenticator(hs_config(), ENV)
    assert reason(auth, f"Bearer {hs_token(aud='someone-else')}") == "invalid token audience"


def test_hs256_wrong_issuer() -> None:
    auth = Authenticator(hs_config(), ENV)
    assert reason(auth, f"Bearer {hs_token(iss='https://evil.example')}") == "invalid token issuer"


def test_hs256_bad_signature() -> None:
    auth = Authenticator(hs_config(), ENV)
    assert reason(auth, f"Bearer {hs_token(secret='x' * 48)}") == "invalid token signature"


def test_tampered_payload_fails_signature() -> None:
    auth = Authenticator(hs_config(), ENV)
    header, _, signature = hs_token().split(".")
    forged_payload = jwt.encode(claims(sub="mallory"), SECRET, algorithm="HS256").split(".")[1]
    forged = f"{header}.{forged_payload}.{signature}"
    assert reason(auth, f"Bearer {forged}") == "invalid token signature"


@pytest.mark.parametrize("missing", ["exp", "sub"])
def test_token_without_exp_or_sub_is_refused(missing: str) -> None:
    auth = Authenticator(hs_config(), ENV)
    token = jwt.encode(claims(**{missing: None}), SECRET, algorithm="HS256")
    assert reason(auth, f"Bearer {token}") == f"token is missing the '{missing}' claim"


def test_malformed_jwt() -> None:
    auth = Authenticator(hs_config(), ENV)
    assert reason(auth, "Bearer aaaa.bbbb.cccc") == "malformed token"


def test_alg_none_is_refused() -> None:
    auth = Authenticator(hs_config(), ENV)
    unsigned = jwt.encode(claims(), "", algorithm="none")
    assert reason(auth, f"Bearer {unsigned}") == "token algorithm not allowed"


def test_token_not_yet_valid() -> None:
    auth = Authenticator(hs_config(), ENV)
    assert reason(auth, f"Bearer {hs_token(nbf=int(time.time()) + 600)}") == "token not yet valid"


@pytest.mark.parametrize(
    ("roles", "expected"),
    [
        (["viewer"], Role.VIEWER),
        (["viewer", "admin", "bogus"], Role.ADMIN),
        ("member owner", Role.OWNER),
        ("ADMIN", Role.ADMIN),
        (["bogus"], Role.MEMBER),
        ([], Role.MEMBER),
        (42, Role.MEMBER),
        ([1, "viewer"], Role.VIEWER),
    ],
)
def test_roles_claim_maps_to_highest_known_role(roles: Any, expected: Role) -> None:
    auth = Authenticator(hs_config(), ENV)
    assert auth.authenticate(f"Bearer {hs_token(roles=roles)}").role == expected


def test_custom_roles_claim_name() -> None:
    auth = Authenticator(hs_config(roles_claim="gw_roles"), ENV)
    token = hs_token(gw_roles=["admin"], roles=["owner"])
    assert auth.authenticate(f"Bearer {token}").role == Role.ADMIN


def test_missing_secret_variable_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="GW_JWT_SECRET"):
        Authenticator(hs_config(), {})


def test_short_secret_fails_at_construction() -> None:
    with pytest.raises(ValueError, match="at least 32"):
        Authenticator(hs_config(), {"GW_JWT_SECRET": "short"})


# --- JWT RS256 --------------------------------------------------------------------------------------------


def rs_config(public_key_file: Path, algorithms: list[Any] | None = None) -> AuthConfig:
    jwt_config = JwtConfig(
        algorithms=algorithms or ["RS256"],
        secret_env="GW_JWT_SECRET" if algorithms and "HS256" in algorithms else None,
        public_key_file=public_key_file,
        issuer=ISSUER,
        audience=AUDIENCE,
    )
    return AuthConfig(jwt=jwt_config)


def test_rs256_good_token(rsa_private_key: rsa.RSAPrivateKey, rs_public_pem: Path) -> None:
    auth = Authenticator(rs_config(rs_public_pem), {})
    token = jwt.encode(claims(roles=["admin"]), rsa_private_key, algorithm="RS256")
    identity = auth.authenticate(f"Bearer {token}")
    assert (identity.subject, identity.method, identity.role) == ("jwt:alice", "jwt", Role.ADMIN)


def test_rs256_token_signed_by_another_key_is_refused(rs_public_pem: Path) -> None:
    auth = Authenticator(rs_config(rs_public_pem), {})
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    token = jwt.encode(claims(), other, algorithm="RS256")
    assert reason(auth, f"Bearer {token}") == "invalid token signature"


def test_hs256_token_is_refused_when_only_rs256_is_allowed(rs_public_pem: Path) -> None:
    auth = Authenticator(rs_config(rs_public_pem), {})
    assert reason(auth, f"Bearer {hs_token()}") == "token algorithm not allowed"


def test_public_key_cannot_be_used_as_hmac_secret(rs_public_pem: Path) -> None:
    """Algorithm confusion: an HS256 token 'signed' with the public PEM must never verify."""
    auth = Authenticator(rs_config(rs_public_pem, ["RS256", "HS256"]), ENV)
    pem = rs_public_pem.read_bytes()
    header_payload = jwt.encode(claims(), SECRET, algorithm="HS256").rsplit(".", 1)[0]
    signature = hmac.new(pem, header_payload.encode(), hashlib.sha256).digest()
    forged = f"{header_payload}.{jwt.utils.base64url_encode(signature).decode()}"
    assert reason(auth, f"Bearer {forged}") == "invalid token signature"
    # and both algorithms still work with their own keys
    assert auth.authenticate(f"Bearer {hs_token()}").method == "jwt"


def test_unreadable_public_key_file_fails_at_construction(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="cannot read public_key_file"):
        Authenticator(rs_config(tmp_path / "missing.pem"), {})


def test_non_rsa_or_garbage_public_key_fails_at_construction(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(ValueError, match="not a PEM public key"):
        Authenticator(rs_config(garbage), {})
    ec_file = tmp_path / "ec.pem"
    ec_file.write_bytes(
        ec.generate_private_key(ec.SECP256R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    with pytest.raises(ValueError, match="not an RSA public key"):
        Authenticator(rs_config(ec_file), {})
