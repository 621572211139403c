"""Authentication: turn an `Authorization: Bearer ...` header into an `Identity`.

Two kinds of bearer token are accepted when configured: API keys (stored only as `sha256:<hex>` hashes and
compared in constant time) and JWTs (HS256 with a secret from the environment, RS256 with a PEM public
key). With no auth configured every caller is the local owner; the CLI only allows that on loopback.
Tokens are never logged, and error messages never echo them.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .config import AuthConfig, JwtConfig
from .errors import Unauthorized
from .identity import LOCAL_OWNER, Identity, Role, highest_role

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

log = logging.getLogger("gateway.auth")

API_KEY_PREFIX = "gw_"
# Anything longer is refused before any parsing or hashing: no honest bearer token is this big.
MAX_TOKEN_LENGTH = 8192
# RFC 7518 section 3.2: an HS256 key MUST be at least as long as the hash output.
MIN_HS256_SECRET_BYTES = 32
MIN_RSA_KEY_BITS = 2048

_JWT_SHAPE = re.compile(r"^[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]+={0,2}\.[A-Za-z0-9_-]*={0,2}$")


def hash_api_key(key: str) -> str:
    """The `sha256:<hex>` form of an API key, as stored in the config (the key itself never is)."""
    return "sha256:" + hashlib.sha256(key.encode("utf-8")).hexdigest()


def generate_api_key() -> str:
    """A new random API key (`gw_` + 256 bits, URL-safe); show it once and store only its hash."""
    return API_KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_jwt(token: str) -> bool:
    """True when `token` has the three base64url segments of a compact JWS."""
    return _JWT_SHAPE.match(token) is not None


def _roles_from_claim(value: Any) -> list[str]:
    if isinstance(value, str):
        return value.split()
    if isinstance(value, list | tuple):
        return [item for item in value if isinstance(item, str)]
    return []


class Authenticator:
    """Checks bearer tokens against the configured API keys and JWT settings.

    Everything that can be wrong with the configuration (a missing secret variable, an unreadable or
    unsuitable public key) raises `ValueError` here, at construction, rather than on the first request.
    """

    def __init__(self, config: AuthConfig, environ: Mapping[str, str] | None = None) -> None:
        self._config = config
        self._keys: list[tuple[str, bytes, Role]] = [
            (key.name, key.hash.encode("ascii"), highest_role(key.roles)) for key in config.api_keys
        ]
        self._jwt: JwtConfig | None = config.jwt
        self._hs256_secret: bytes | None = None
        self._rs256_key: RSAPublicKey | None = None
        if self._jwt is not None:
            env = os.environ if environ is None else environ
            if "HS256" in self._jwt.algorithms:
                self._hs256_secret = self._load_secret(self._jwt, env)
            if "RS256" in self._jwt.algorithms:
                self._rs256_key = self._load_public_key(self._jwt)

    @staticmethod
    def _load_secret(jwt_config: JwtConfig, environ: Mapping[str, str]) -> bytes:
        name = jwt_config.secret_env
        if not name:  # the config model already refuses this; kept for a clear message if it ever changes
            raise ValueError("auth.jwt: HS256 needs secret_env")
        value = environ.get(name)
        if not value:
            raise ValueError(f"auth.jwt: the environment variable {name} (secret_env) is not set or empty")
        secret = value.encode("utf-8")
        if len(secret) < MIN_HS256_SECRET_BYTES:
            raise ValueError(
                f"auth.jwt: the HS256 secret in {name} is {len(secret)} bytes; "
                f"at least {MIN_HS256_SECRET_BYTES} are required (RFC 7518 section 3.2)"
            )
        return secret

    @staticmethod
    def _load_public_key(jwt_config: JwtConfig) -> RSAPublicKey:
        path = jwt_config.public_key_file
        if path is None:
            raise ValueError("auth.jwt: RS256 needs public_key_file")
        try:
            pem = path.read_bytes()
        except OSError as exc:
            raise ValueError(f"auth.jwt: cannot read public_key_file {path}: {exc.strerror}") from exc
        # Imported here so that a gateway without RS256 never loads the crypto backend.
        from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
        from cryptography.hazmat.primitives.serialization import load_pem_public_key

        try:
            key = load_pem_public_key(pem)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"auth.jwt: {path} is not a PEM public key") from exc
        if not isinstance(key, RSAPublicKey):
            raise ValueError(f"auth.jwt: {path} holds a {type(key).__name__}, not an RSA public key")
        if key.key_size < MIN_RSA_KEY_BITS:
            raise ValueError(
                f"auth.jwt: the RSA key in {path} has {key.key_size} bits; at least {MIN_RSA_KEY_BITS} needed"
            )
        return key

    @property
    def enabled(self) -> bool:
        """Whether any authentication is configured; when not, every caller is the local owner."""
        return self._config.enabled

    def authenticate(self, authorization_header: str | None) -> Identity:
        """The caller's identity for an `Authorization` header value; raises `Unauthorized` otherwise."""
        if not self.enabled:
            return LOCAL_OWNER
        if authorization_header is None or not authorization_header.strip():
            raise Unauthorized("missing bearer token")
        token = self._bearer_token(authorization_header)
        identity = self._match_api_key(token)
        if identity is not None:
            return identity
        if self._jwt is not None and looks_like_jwt(token):
            return self._verify_jwt(token, self._jwt)
        raise Unauthorized("invalid bearer token")

    @staticmethod
    def _bearer_token(header: str) -> str:
        if len(header) > MAX_TOKEN_LENGTH + 16:
            raise Unauthorized("bearer token too long")
        parts = header.split()
        if len(parts) != 2 or parts[0].lower() != "bearer":
            raise Unauthorized("authorization header must be 'Bearer <token>'")
        return parts[1]

    def _match_api_key(self, token: str) -> Identity | None:
        if not self._keys:
            return None
        presented = hash_api_key(token).encode("ascii")
        found: tuple[str, Role] | None = None
        # Compare against every key, without stopping early, so timing says nothing about which matched.
        for name, stored, role in self._keys:
            if hmac.compare_digest(presented, stored) and found is None:
                found = (name, role)
        if found is None:
            return None
        name, role = found
        return Identity(subject=f"key:{name}", method="api_key", role=role)

    def _verify_jwt(self, token: str, config: JwtConfig) -> Identity:
        import jwt  # lazily: most start-ups (editors, no auth) never need it
        from jwt.exceptions import InvalidSubjectError

        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise Unauthorized("malformed token") from exc
        algorithm = header.get("alg")
        # The key is chosen by the algorithm and only that algorithm is allowed for it, so a token can
        # never get the RS256 public key used as an HMAC secret (algorithm confusion).
        key: bytes | RSAPublicKey | None
        if algorithm == "HS256" and "HS256" in config.algorithms:
            key = self._hs256_secret
        elif algorithm == "RS256" and "RS256" in config.algorithms:
            key = self._rs256_key
        else:
            raise Unauthorized("token algorithm not allowed")
        if key is None:  # pragma: no cover - construction guarantees a key for every configured algorithm
            raise Unauthorized("token algorithm not allowed")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=config.audience,
                issuer=config.issuer,
                leeway=config.leeway_seconds,
                options={"require": ["exp", "sub"], "strict_aud": False},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise Unauthorized("token not yet valid") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("invalid token audience") from exc
        except jwt.InvalidIssuerError as exc:
            raise Unauthorized("invalid token issuer") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise Unauthorized(f"token is missing the '{exc.claim}' claim") from exc
        except jwt.InvalidSignatureError as exc:
            raise Unauthorized("invalid token signature") from exc
        except InvalidSubjectError as exc:
            raise Unauthorized("invalid token subject") from exc
        except jwt.InvalidAlgorithmError as exc:
            raise Unauthorized("token algorithm not allowed") from exc
        except jwt.DecodeError as exc:
            raise Unauthorized("malformed token") from exc
        except jwt.PyJWTError as exc:
            log.debug("jwt rejected: %s", type(exc).__name__)
            raise Unauthorized("invalid token") from exc
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise Unauthorized("invalid token subject")
        role = highest_role(_roles_from_claim(claims.get(config.roles_claim)))
        return Identity(subject=f"jwt:{subject}", method="jwt", role=role, claims=claims)
