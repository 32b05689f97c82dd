"""Building the target Secret's data from fetched values, optionally through templates.

Templates are Jinja2 in a sandbox (no attribute access to Python internals, no
file or network access), with strict undefined variables so a typo fails loudly
instead of writing an empty credential. Error messages name the template key and
the problem, never a fetched value: an exception raised while rendering can
carry the value in its text, so only its type is reported.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

import jinja2
from jinja2.sandbox import ImmutableSandboxedEnvironment

from vaultsync.errors import InvalidSpec, TemplateError, VaultsyncError
from vaultsync.models import SECRET_KEY_RULE, ExternalSecretSpec, TemplateSpec, is_valid_secret_key
from vaultsync.properties import extract_all, masked_name, select_property
from vaultsync.providers.base import RemoteRef, RemoteValue

TEMPLATE_FIELD = "spec.target.template.data"
_UNDEFINED_NAME = re.compile(r"'[A-Za-z_][A-Za-z0-9_]*' is undefined")


def _b64encode(value: str | bytes) -> str:
    raw = value.encode() if isinstance(value, str) else value
    return base64.b64encode(raw).decode()


def _b64decode(value: str) -> str:
    return base64.b64decode(value).decode()


def _fromjson(value: str) -> Any:
    return json.loads(value)


def _environment(delimiters: tuple[str, str]) -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(
        variable_start_string=delimiters[0],
        variable_end_string=delimiters[1],
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        keep_trailing_newline=True,
    )
    env.filters.update(b64encode=_b64encode, b64decode=_b64decode, fromjson=_fromjson)
    return env


def _as_text(values: Mapping[str, bytes]) -> dict[str, str]:
    return {k: v.decode("utf-8", errors="surrogateescape") for k, v in values.items()}


def _describe_undefined(exc: jinja2.UndefinedError) -> str:
    """Names the missing variable; other undefined lookups may quote a value, so they don't."""
    message = exc.message or ""
    if _UNDEFINED_NAME.fullmatch(message):
        return f"{message} (fetched keys are the variables)"
    return "a lookup in the template found nothing (UndefinedError)"


def render(template: TemplateSpec, values: Mapping[str, bytes]) -> dict[str, bytes]:
    """The Secret data: each `template.data` entry rendered over the fetched keys."""
    env = _environment(template.delimiters)
    context = _as_text(values)
    rendered: dict[str, bytes] = {}
    for secret_key, source in template.data.items():
        field = f"{TEMPLATE_FIELD}.{secret_key}"
        try:
            compiled = env.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise TemplateError(f"{field}: syntax error on line {exc.lineno}: {exc.message}") from None
        try:
            text = compiled.render(context)
        except jinja2.UndefinedError as exc:
            raise TemplateError(f"{field}: {_describe_undefined(exc)}") from None
        except jinja2.TemplateError as exc:
            raise TemplateError(f"{field}: {type(exc).__name__} while rendering") from None
        except Exception as exc:  # a filter may embed its input (the secret) in the message
            raise TemplateError(f"{field}: {type(exc).__name__} while rendering") from None
        rendered[secret_key] = text.encode("utf-8", errors="surrogateescape")
    return rendered


def build_data(
    spec: ExternalSecretSpec, fetched: Mapping[RemoteRef, RemoteValue | VaultsyncError]
) -> tuple[dict[str, bytes], dict[str, str]]:
    """The Secret's data and the remote versions read, from what the providers returned.

    `dataFrom` entries come first and `data` entries override them; a template,
    when present, replaces the whole data with its rendered keys. Each error
    names the spec field it comes from.
    """
    data: dict[str, bytes] = {}
    versions: dict[str, str] = {}

    def value_of(ref: RemoteRef, field: str) -> bytes:
        result = fetched[ref]
        if isinstance(result, VaultsyncError):
            raise result.at(field)
        if result.version:
            versions[ref.key if not ref.version else f"{ref.key}@{ref.version}"] = result.version
        return result.value

    for i, item in enumerate(spec.data_from):
        field = f"spec.dataFrom[{i}].extract"
        raw = value_of(RemoteRef(item.extract.key, item.extract.version), f"{field}.key")
        for name, value in extract_all(raw, key=item.extract.key, field=field).items():
            if not is_valid_secret_key(name):
                raise InvalidSpec(
                    f"{field}: property {masked_name(name)} of remote key {item.extract.key!r} "
                    f"is not a valid Secret key ({SECRET_KEY_RULE})"
                )
            data[name] = value
    for i, entry in enumerate(spec.data):
        field = f"spec.data[{i}].remoteRef"
        ref = RemoteRef(entry.remote_ref.key, entry.remote_ref.version)
        raw = value_of(ref, f"{field}.key")
        data[entry.secret_key] = select_property(
            raw, entry.remote_ref.property, key=ref.key, field=f"{field}.property"
        )
    if spec.target.template is not None and spec.target.template.data:
        data = render(spec.target.template, data)
    return data, versions


def remote_refs(spec: ExternalSecretSpec) -> list[RemoteRef]:
    """Every distinct remote value an ExternalSecret needs, in spec order."""
    refs = [RemoteRef(i.extract.key, i.extract.version) for i in spec.data_from]
    refs += [RemoteRef(i.remote_ref.key, i.remote_ref.version) for i in spec.data]
    return list(dict.fromkeys(refs))
