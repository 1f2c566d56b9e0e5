"""Our pages' CSP has `style-src 'self'`: a style="" attribute or a <style> element in a
page is ignored by the browser, so the pages style by class, in app.css.

The security card is shared with the invitation messages, which get no stylesheet: the
e-mail copy keeps its inline style, the page copy must not have it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from provisioner.briefing.content import render_card_html
from provisioner.delivery.render import default_template_dir, make_template_environment
from provisioner.web import STATIC_DIR
from provisioner.web.render import TEMPLATE_DIR
from tests.support import STRICT_SETTINGS

INLINE_STYLE = re.compile(r"<[^>]*\sstyle\s*=|<style[\s>]", re.IGNORECASE)
CSS = (STATIC_DIR / "app.css").read_text()
WEB_TEMPLATES = sorted(TEMPLATE_DIR.rglob("*.html"))


def css_rule(selector: str) -> str:
    found = re.search(rf"(?m)^{re.escape(selector)}\s*\{{([^}}]*)\}}", CSS)
    assert found is not None, f"app.css has no rule for {selector}"
    return found.group(1)


@pytest.mark.parametrize("template", WEB_TEMPLATES, ids=lambda p: p.name)
def test_no_web_template_has_an_inline_style(template: Path) -> None:
    assert not INLINE_STYLE.search(template.read_text()), template


def test_the_card_on_a_page_has_no_inline_style_and_its_class_is_styled() -> None:
    card = render_card_html(
        make_template_environment(default_template_dir()),
        provider="zoom",
        settings=STRICT_SETTINGS,
        not_enforced=(),
    )
    assert not INLINE_STYLE.search(str(card))
    assert 'class="briefing-title"' in str(card)
    assert "font-size: 1.1em" in css_rule(".briefing-title")


def test_the_card_in_an_email_keeps_its_inline_style() -> None:
    environment = make_template_environment(default_template_dir())
    source = "{% include 'briefing/card.html' %}"
    html = environment.from_string(source).render(
        is_host=True,
        provider="Zoom",
        briefing={"steps": [], "tip": ""},
        enforced=[],
        not_enforced=[],
        actions=[],
    )
    assert 'style="font-size: 1.1em;"' in html


def test_the_statement_keeps_its_line_breaks_by_class() -> None:
    assert 'class="statement"' in (TEMPLATE_DIR / "incident_detail.html").read_text()
    assert "white-space: pre-wrap" in css_rule(".statement")
