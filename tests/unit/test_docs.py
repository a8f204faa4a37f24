"""The documentation that is generated must be what the code says now, and the README stays a
README: short, with links that resolve."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _generator():
    spec = importlib.util.spec_from_file_location("docs_generate", ROOT / "docs" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_generated_page_is_what_the_code_makes_now():
    generate = _generator()
    stale = [
        page
        for page, maker in generate.PAGES.items()
        if (ROOT / "docs" / page).read_text() != getattr(generate, maker)()
    ]
    assert not stale, f"stale: {stale}; run `python docs/generate.py` and commit the pages"


def test_the_configuration_reference_names_every_setting_with_its_environment_variable():
    text = (ROOT / "docs" / "reference" / "configuration.md").read_text()
    for setting, env in (
        ("production.replicas", "JEWELRY_PRODUCTION__REPLICAS"),
        ("logistics.breaker.open_s", "JEWELRY_LOGISTICS__BREAKER__OPEN_S"),
        ("http.rate_limit_per_s", "JEWELRY_HTTP__RATE_LIMIT_PER_S"),
        ("ledger.location", "JEWELRY_LEDGER__LOCATION"),
    ):
        assert f"| `{setting}` |" in text and f"`{env}`" in text, setting


def test_the_readme_stays_short_and_its_links_resolve():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) <= 250
    links = re.findall(r"\]\(([^)#:]+)\)", text)
    assert links and all((ROOT / link).exists() for link in links), [
        link for link in links if not (ROOT / link).exists()
    ]
