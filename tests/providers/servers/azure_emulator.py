"""A local Azure Key Vault (secrets API) and Entra ID token endpoint for the azurekv provider tests.

Lowkey Vault, the emulator the project planned on, cannot be had here: the package registry
serves no version of `com.github.nagyesta.lowkey-vault:lowkey-vault-app` (its metadata and the
3.4.x poms answer "not found"), and no other Key Vault emulator is served by PyPI, npm or the
Go module proxy. So this process speaks the parts of the two Azure wire protocols that the
unmodified `azure-keyvault-secrets` and `azure-identity` clients use, over real HTTPS:

- Key Vault (API 7.x): `PUT /secrets/{name}` (with tags), `GET /secrets/{name}[/{version}]`,
  the listing `GET /secrets` (secret ids, attributes and tags without values, `maxresults` of
  1-25 a page, `nextLink`: one listing serves both dataFrom.find and change detection),
  soft delete `DELETE /secrets/{name}` and purge `DELETE /deletedsecrets/{name}` (a deleted
  name cannot be set again until purged: 409), `POST /secrets/{name}/backup` and
  `POST /secrets/restore` (all versions with their own times, so an earlier version is current
  again), the 401 + `WWW-Authenticate: Bearer authorization=..., resource=...` challenge that
  the SDK's challenge policy negotiates, 403 when the caller lacks the permission, 404
  `SecretNotFound`, and Azure's `{"error": {"code", "message"}}` bodies. Times are whole Unix
  seconds, as Key Vault's; every answer carries a `Date` header.
- Entra ID: `POST /{tenant}/oauth2/v2.0/token` with `client_secret` or a federated
  `client_assertion` (workload identity: an RS256 JWT from a trusted issuer whose subject and
  audience must match the app's federated credential), refusing unknown apps, wrong secrets and
  foreign tenants with the real AADSTS codes.
- Managed identity: the IMDS `GET /metadata/identity/oauth2/token` (needs `Metadata: true`),
  reached through `AZURE_POD_IDENTITY_AUTHORITY_HOST`.

Unlike Lowkey Vault, bearer tokens are checked: only tokens this process issued (HMAC-signed,
unexpired, same tenant) are accepted, so bad credentials really fail. Secrets persist in a
JSON state file, so a stopped and restarted emulator keeps its data, like a real vault.

    python tests/providers/servers/azure_emulator.py CONFIG.json

The benchmark reads what the vault was asked: `GET /__bench/counts` (requests and answer
bytes by operation) and `POST /__bench/reset`, outside the Key Vault API.

CONFIG: {"port", "tenant_id", "cert_file", "key_file", "state_file", "next_link_origin"?,
         "identities": {client_id: {"secret"?, "federated_subject"?, "managed"?, "permissions"}},
         "federation": {"issuer", "public_key_pem"}}
It runs on the standard library plus `cryptography` (already a dependency of azure-identity).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import re
import secrets
import ssl
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

KEY_VAULT_RESOURCE = "https://vault.azure.net"
TOKEN_EXCHANGE_AUDIENCE = "api://AzureADTokenExchange"
SECRET_NAME = re.compile(r"^[0-9a-zA-Z-]{1,127}$")
TOKEN_LIFETIME_SECONDS = 3600
LIST_PAGE_MAX = 25  # Key Vault's own limit for `maxresults`


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class Emulator:
    """The vault's and the directory's state; handlers read and change it under `lock`."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.config = config
        self.tenant: str = config["tenant_id"]
        self.identities: dict[str, dict[str, Any]] = config["identities"]
        self.state_file = Path(config["state_file"])
        self.lock = threading.Lock()
        if self.state_file.exists():
            self.state = json.loads(self.state_file.read_text())
        else:
            self.state = {"signing_key": secrets.token_hex(32), "secrets": {}}
            self._save()
        self.state.setdefault("deleted", {})
        self.calls: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        federation = config.get("federation") or {}
        self.issuer: str = federation.get("issuer", "")
        self.issuer_key: rsa.RSAPublicKey | None = None
        if federation.get("public_key_pem"):
            key = serialization.load_pem_public_key(federation["public_key_pem"].encode())
            assert isinstance(key, rsa.RSAPublicKey)
            self.issuer_key = key

    def _save(self) -> None:
        tmp = self.state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state))
        os.replace(tmp, self.state_file)

    # -- tokens -------------------------------------------------------------------------

    def issue_token(self, client_id: str, resource: str) -> str:
        claims = {
            "appid": client_id,
            "tid": self.tenant,
            "aud": resource,
            "exp": int(time.time()) + TOKEN_LIFETIME_SECONDS,
        }
        payload = _b64url(json.dumps(claims).encode())
        return f"{payload}.{self._sign(payload)}"

    def _sign(self, payload: str) -> str:
        key = bytes.fromhex(self.state["signing_key"])
        return _b64url(hmac.new(key, payload.encode(), hashlib.sha256).digest())

    def token_client(self, authorization: str) -> tuple[str | None, str]:
        """The app id a bearer token was issued to, or None and why it is refused."""
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token:
            return None, "AKV10000: Request is missing a Bearer or PoP token."
        payload, _, signature = token.partition(".")
        if not hmac.compare_digest(self._sign(payload), signature):
            return None, "AKV10022: Invalid audience or signature of the access token."
        claims = json.loads(_b64url_decode(payload))
        if claims["tid"] != self.tenant:
            return None, "AKV10032: Invalid issuer. Expected one of the vault's tenant."
        if claims["exp"] < time.time():
            return None, "AKV10017: The access token has expired."
        return str(claims["appid"]), ""

    def verify_assertion(self, client_id: str, assertion: str) -> str:
        """'' if the federated assertion is acceptable for `client_id`, else the AADSTS reason."""
        if self.issuer_key is None:
            return "AADSTS70021: No matching federated identity record found for presented assertion."
        try:
            header_b64, payload_b64, signature_b64 = assertion.split(".")
            header = json.loads(_b64url_decode(header_b64))
            if header.get("alg") != "RS256":
                return "AADSTS50027: JWT token is invalid or malformed (alg)."
            self.issuer_key.verify(
                _b64url_decode(signature_b64),
                f"{header_b64}.{payload_b64}".encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
            claims = json.loads(_b64url_decode(payload_b64))
        except (ValueError, InvalidSignature):
            return "AADSTS50013: Assertion failed signature validation."
        audiences = claims.get("aud")
        audiences = [audiences] if isinstance(audiences, str) else audiences or []
        subject = self.identities[client_id].get("federated_subject")
        if claims.get("exp", 0) < time.time():
            return "AADSTS700024: Client assertion is not within its valid time range."
        if (
            claims.get("iss") != self.issuer
            or claims.get("sub") != subject
            or TOKEN_EXCHANGE_AUDIENCE not in audiences
        ):
            return (
                "AADSTS70021: No matching federated identity record found for presented "
                f"assertion. Assertion Issuer: '{claims.get('iss')}'. "
                f"Assertion Subject: '{claims.get('sub')}'. Assertion Audience: '{audiences}'."
            )
        return ""

    # -- secrets ------------------------------------------------------------------------

    def set_secret(
        self, name: str, value: str, content_type: str | None, tags: dict[str, str] | None = None
    ) -> dict[str, Any] | None:
        """The new version; None while the name is deleted but not purged (Azure's 409)."""
        if name.lower() in self.state["deleted"]:
            return None
        now = int(time.time())
        entry = {
            "name": name,
            "version": uuid.uuid4().hex,
            "value": value,
            "contentType": content_type,
            "created": now,
            "tags": tags or {},
        }
        self.state["secrets"].setdefault(name.lower(), []).append(entry)
        self._save()
        return entry

    def get_secret(self, name: str, version: str) -> dict[str, Any] | None:
        versions = self.state["secrets"].get(name.lower(), [])
        if not version:
            return versions[-1] if versions else None
        return next((v for v in versions if v["version"] == version.lower()), None)

    def latest(self, after: str, count: int) -> tuple[list[dict[str, Any]], str]:
        """The current versions of up to `count` secrets named after `after`, by name, and
        the name to continue after ('' at the end)."""
        names = sorted(n for n in self.state["secrets"] if n > after)
        page = [self.state["secrets"][n][-1] for n in names[:count]]
        return page, page[-1]["name"].lower() if len(names) > count else ""

    def delete(self, name: str) -> dict[str, Any] | None:
        versions: list[dict[str, Any]] | None = self.state["secrets"].pop(name.lower(), None)
        if versions is None:
            return None
        self.state["deleted"][name.lower()] = versions
        self._save()
        return versions[-1]

    def purge(self, name: str) -> bool:
        purged = self.state["deleted"].pop(name.lower(), None) is not None
        self._save()
        return purged

    def backup(self, name: str) -> str | None:
        versions = self.state["secrets"].get(name.lower())
        return _b64url(json.dumps(versions).encode()) if versions else None

    def restore(self, blob: str) -> dict[str, Any] | None:
        """Every version of the backup, with its own times; None if the name is taken."""
        versions: list[dict[str, Any]] = json.loads(_b64url_decode(blob))
        name = versions[-1]["name"].lower()
        if name in self.state["secrets"] or name in self.state["deleted"]:
            return None
        self.state["secrets"][name] = versions
        self._save()
        return dict(versions[-1])


class Handler(BaseHTTPRequestHandler):
    server: EmulatorServer
    protocol_version = "HTTP/1.1"
    operation = ""  # the Key Vault operation being answered, counted for the benchmark

    def setup(self) -> None:
        self.request.do_handshake()
        super().setup()

    def parse_request(self) -> bool:
        self.operation = ""
        return super().parse_request()

    @property
    def emulator(self) -> Emulator:
        return self.server.emulator

    @property
    def base_url(self) -> str:
        return f"https://{self.headers.get('Host', '127.0.0.1')}"

    def _send(self, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        if self.operation:
            with self.emulator.lock:
                self.emulator.bytes[self.operation] += len(data)
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _vault_error(self, status: int, code: str, message: str, **headers: str) -> None:
        self._send(status, {"error": {"code": code, "message": message}}, headers)

    def _aad_error(self, status: int, error: str, description: str) -> None:
        code = int(description.split(":")[0].removeprefix("AADSTS") or 0)
        self._send(status, {"error": error, "error_description": description, "error_codes": [code]})

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    # -- routing ------------------------------------------------------------------------

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._send(200, {"status": "ok"})
        elif url.path == "/metadata/identity/oauth2/token":
            self._imds_token(parse_qs(url.query))
        elif url.path == "/__bench/counts":
            with self.emulator.lock:
                counts = {"calls": dict(self.emulator.calls), "bytes": dict(self.emulator.bytes)}
            self._send(200, counts)
        else:
            self._vault("GET", url.path, url.query)

    def do_PUT(self) -> None:
        url = urlsplit(self.path)
        self._vault("PUT", url.path, url.query)

    def do_DELETE(self) -> None:
        url = urlsplit(self.path)
        self._vault("DELETE", url.path, url.query)

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        parts = url.path.strip("/").split("/")
        if len(parts) == 4 and parts[1:] == ["oauth2", "v2.0", "token"]:
            self._aad_token(parts[0], parse_qs(self._body().decode()))
        elif url.path == "/__bench/reset":
            with self.emulator.lock:
                self.emulator.calls.clear()
                self.emulator.bytes.clear()
            self._send(200, {})
        else:
            self._vault("POST", url.path, url.query)

    # -- Entra ID -----------------------------------------------------------------------

    def _aad_token(self, tenant: str, form: dict[str, list[str]]) -> None:
        field = {k: v[0] for k, v in form.items()}
        emulator = self.emulator
        if tenant != emulator.tenant:
            self._aad_error(400, "invalid_request", f"AADSTS90002: Tenant '{tenant}' not found.")
            return
        if field.get("grant_type") != "client_credentials":
            self._aad_error(400, "unsupported_grant_type", "AADSTS70003: grant type unsupported.")
            return
        client_id = field.get("client_id", "")
        identity = emulator.identities.get(client_id)
        if identity is None or identity.get("managed"):
            self._aad_error(
                400,
                "unauthorized_client",
                f"AADSTS700016: Application with identifier '{client_id}' was not found in the "
                f"directory '{tenant}'.",
            )
            return
        if "client_assertion" in field:
            with emulator.lock:
                refusal = emulator.verify_assertion(client_id, field["client_assertion"])
        elif hmac.compare_digest(field.get("client_secret", ""), identity.get("secret") or "\0"):
            refusal = ""
        else:
            refusal = (
                "AADSTS7000215: Invalid client secret provided. Ensure the secret being sent "
                f"in the request is the client secret value for app '{client_id}'."
            )
        if refusal:
            self._aad_error(401, "invalid_client", refusal)
            return
        resource = field.get("scope", "").removesuffix("/.default")
        with emulator.lock:
            token = emulator.issue_token(client_id, resource)
        self._send(
            200,
            {
                "token_type": "Bearer",
                "expires_in": TOKEN_LIFETIME_SECONDS,
                "ext_expires_in": TOKEN_LIFETIME_SECONDS,
                "access_token": token,
            },
        )

    def _imds_token(self, query: dict[str, list[str]]) -> None:
        if self.headers.get("Metadata", "").lower() != "true":
            self._send(
                400,
                {
                    "error": "invalid_request",
                    "error_description": "Required metadata header not specified",
                },
            )
            return
        client_id = query.get("client_id", ["system-assigned"])[0]
        identity = self.emulator.identities.get(client_id)
        if identity is None or not identity.get("managed"):
            self._send(400, {"error": "invalid_request", "error_description": "Identity not found"})
            return
        resource = query.get("resource", [KEY_VAULT_RESOURCE])[0]
        with self.emulator.lock:
            token = self.emulator.issue_token(client_id, resource)
        now = int(time.time())
        self._send(
            200,
            {
                "access_token": token,
                "client_id": client_id,
                "expires_in": str(TOKEN_LIFETIME_SECONDS),
                "expires_on": str(now + TOKEN_LIFETIME_SECONDS),
                "ext_expires_in": str(TOKEN_LIFETIME_SECONDS),
                "not_before": str(now),
                "resource": resource,
                "token_type": "Bearer",
            },
        )

    # -- Key Vault ----------------------------------------------------------------------

    def _vault(self, method: str, path: str, query: str) -> None:
        body = self._body()
        emulator = self.emulator
        operation, name, version = _route(method, path.strip("/").split("/"))
        if not operation:
            self._vault_error(404, "NotFound", f"no route for {method} {path}")
            return
        with emulator.lock:
            client_id, refusal = emulator.token_client(self.headers.get("Authorization", ""))
            # Requests without a token only fetch the challenge (once per client): not counted
            # as the operation, which the client sends again with a token.
            self.operation = operation if client_id is not None else "challenge"
            emulator.calls[self.operation] += 1
        if client_id is None:
            challenge = (
                f'Bearer authorization="{self.base_url}/{emulator.tenant}", resource="{KEY_VAULT_RESOURCE}"'
            )
            self._vault_error(401, "Unauthorized", refusal, **{"WWW-Authenticate": challenge})
            return
        params = parse_qs(query)
        if not params.get("api-version"):
            self._vault_error(400, "BadParameter", "The 'api-version' query parameter is missing.")
            return
        identity = emulator.identities.get(client_id, {})
        if operation not in identity.get("permissions", ()):
            self._vault_error(
                403,
                "Forbidden",
                f"The user, group or application 'appid={client_id}' does not have secrets "
                f"{operation} permission on key vault 'vaultsync-emulator'.",
            )
            return
        if name and not SECRET_NAME.match(name):
            self._vault_error(400, "BadParameter", "The request URI contains an invalid name.")
            return
        if operation == "list":
            self._list(params)
        elif operation in ("backup", "restore", "purge"):
            self._keep(operation, name, body)
        else:
            self._secret(operation, name, version, body)

    def _secret(self, operation: str, name: str, version: str, body: bytes) -> None:
        emulator = self.emulator
        if operation == "set":
            request = json.loads(body or b"{}")
            if not isinstance(request.get("value"), str):
                self._vault_error(400, "BadParameter", "Property 'value' is required.")
                return
            with emulator.lock:
                entry = emulator.set_secret(
                    name, request["value"], request.get("contentType"), request.get("tags")
                )
            if entry is None:
                self._vault_error(
                    409,
                    "Conflict",
                    f"Secret {name} is currently in a deleted but recoverable state, and its "
                    "name cannot be reused; in this state, the secret can only be recovered or purged.",
                )
                return
        else:
            with emulator.lock:
                entry = emulator.delete(name) if operation == "delete" else emulator.get_secret(name, version)
        if entry is None:
            self._not_found(name, version)
            return
        bundle = self._properties(entry, versioned=True)
        if operation != "delete":
            bundle["value"] = entry["value"]
        self._send(200, bundle)

    def _keep(self, operation: str, name: str, body: bytes) -> None:
        """Purge, backup and restore: what a rollback to an earlier version needs."""
        emulator = self.emulator
        with emulator.lock:
            if operation == "purge":
                found = emulator.purge(name)
            elif operation == "backup":
                blob = emulator.backup(name)
                found = blob is not None
            else:
                entry = emulator.restore(json.loads(body or b"{}").get("value", ""))
        if operation == "restore":
            if entry is None:
                self._vault_error(409, "Conflict", "A secret with this name already exists or is deleted.")
            else:
                self._send(200, self._properties(entry, versioned=True))
        elif not found:
            self._not_found(name, "")
        elif operation == "backup":
            self._send(200, {"value": blob})
        else:
            self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def _list(self, params: dict[str, list[str]]) -> None:
        size = int((params.get("maxresults") or [str(LIST_PAGE_MAX)])[0])
        if not 1 <= size <= LIST_PAGE_MAX:
            self._vault_error(
                400, "BadParameter", f"The value of 'maxresults' must be between 1 and {LIST_PAGE_MAX}."
            )
            return
        after = (params.get("$skiptoken") or [""])[0]
        with self.emulator.lock:
            page, last = self.emulator.latest(after, size)
        items = [self._properties(entry, versioned=False) for entry in page]
        api_version = params["api-version"][0]
        next_link = None
        if last:
            # `next_link_origin` plays a hostile vault that sends its next page elsewhere.
            origin = self.emulator.config.get("next_link_origin") or self.base_url
            next_link = f"{origin}/secrets?api-version={api_version}&$skiptoken={last}&maxresults={size}"
        self._send(200, {"value": items, "nextLink": next_link})

    def _properties(self, entry: dict[str, Any], *, versioned: bool) -> dict[str, Any]:
        """A secret's id and attributes; a listed item's id has no version, as Key Vault's."""
        suffix = f"/{entry['version']}" if versioned else ""
        properties: dict[str, Any] = {
            "id": f"{self.base_url}/secrets/{entry['name']}{suffix}",
            "attributes": {
                "enabled": True,
                "created": entry["created"],
                "updated": entry["created"],
                "recoveryLevel": "Recoverable+Purgeable",
                "recoverableDays": 90,
            },
            "tags": entry.get("tags") or {},
        }
        if entry["contentType"]:
            properties["contentType"] = entry["contentType"]
        return properties

    def _not_found(self, name: str, version: str) -> None:
        self._vault_error(
            404,
            "SecretNotFound",
            f"A secret with (name/id) {name}{'/' + version if version else ''} was not found "
            "in this key vault.",
        )


def _route(method: str, parts: list[str]) -> tuple[str, str, str]:
    """(operation, which is also the permission it needs; name; version) of a Key Vault path,
    or ('', '', '') for none."""
    match method, parts:
        case "GET", ["secrets"]:
            return "list", "", ""
        case "GET", ["secrets", name]:
            return "get", name, ""
        case "GET", ["secrets", name, version]:
            return "get", name, version
        case "PUT", ["secrets", name]:
            return "set", name, ""
        case "DELETE", ["secrets", name]:
            return "delete", name, ""
        case "DELETE", ["deletedsecrets", name]:
            return "purge", name, ""
        case "POST", ["secrets", "restore"]:
            return "restore", "", ""
        case "POST", ["secrets", name, "backup"]:
            return "backup", name, ""
    return "", "", ""


class EmulatorServer(ThreadingHTTPServer):
    """TLS handshakes happen in the request threads, so a burst of new connections is not
    held up (or dropped from a short listen queue) behind one another's handshakes."""

    daemon_threads = True
    request_queue_size = 256

    def __init__(self, emulator: Emulator) -> None:
        super().__init__(("127.0.0.1", int(emulator.config["port"])), Handler)
        self.emulator = emulator
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(emulator.config["cert_file"], emulator.config["key_file"])
        self.socket = context.wrap_socket(self.socket, server_side=True, do_handshake_on_connect=False)


def main(argv: list[str]) -> int:
    config = json.loads(Path(argv[1]).read_text())
    server = EmulatorServer(Emulator(config))
    print(f"azure emulator listening on https://127.0.0.1:{config['port']}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
