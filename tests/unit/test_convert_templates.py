"""Go templates are translated to vaultsync's Jinja2 only where both render the same bytes.

The translated template is rendered by vaultsync's own sandbox (the code the render worker
runs) and compared with what Go's text/template prints for the same values, worked out by
hand from Go's documented rules (trim markers, comments, missingkey=error).
"""

from __future__ import annotations

import base64

import pytest

from vaultsync.convert.gotemplate import Untranslatable, translate
from vaultsync.sandbox import Limits, RenderError, render_text

VALUES = {"user": "alice", "password": "p{%a}ss", "blob": "bin\x00ary"}


def render(go_source: str) -> str:
    return render_text(("{{", "}}"), {"k": translate(go_source)}, VALUES, Limits())["k"]


@pytest.mark.parametrize(
    ("go_source", "go_output"),
    [
        ("{{ .user }}:{{ .password }}", "alice:p{%a}ss"),
        ("{{.user}}", "alice"),
        ("{{ .user | b64enc }}", base64.b64encode(b"alice").decode()),
        ("{{ b64enc .blob }}", base64.b64encode(b"bin\x00ary").decode()),
        ("a  \n {{- .user -}} \t\n b", "aaliceb"),
        ("a {{- /* gone */ -}} b", "ab"),
        ("x{{/* gone */}}y", "xy"),
        ("{% raw %}{# #}{{ .user }}{", "{% raw %}{# #}alice{"),
        ("{ {{- .user }}", "{alice"),
        ("line\n", "line\n"),
        ("", ""),
    ],
)
def test_translated_templates_render_what_go_renders(go_source: str, go_output: str) -> None:
    assert render(go_source) == go_output


def test_a_missing_key_fails_in_both() -> None:
    with pytest.raises(RenderError, match="'nope' is undefined"):
        render("{{ .nope }}")


@pytest.mark.parametrize(
    ("go_source", "named"),
    [
        ('{{ .url | replace "a" "b" }}', "replace"),
        ("{{ .user | upper }}", "upper"),
        ("{{ if .user }}x{{ end }}", "if .user"),
        ("{{ range .list }}{{ end }}", "range .list"),
        ('{{ index . "tls.crt" }}', "index"),
        ("{{ .data.user }}", ".data.user"),
        ("{{ $x := .user }}", "$x"),
        ("{{ . }}", "'.'"),
        ("{{ .user | b64dec }}", "b64dec"),
        ("{{ .in }}", "'in'"),
        ("{{ .range }}", "'range'"),
        ("{{ .user }", "never closed"),
        ("{{ }}", "empty"),
    ],
)
def test_everything_else_is_refused_naming_the_construct(go_source: str, named: str) -> None:
    with pytest.raises(Untranslatable, match=None) as caught:
        translate(go_source)
    assert named in str(caught.value)
