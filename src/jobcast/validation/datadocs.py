"""Data Docs that render offline: every CSS, JS, font and image a page loads comes from the site folder.

GX 1.x's page templates load Bootstrap, jQuery, Font Awesome (the ✓/✗ status icons), Vega and more from public
CDNs. Offline or behind a proxy the pages rendered unstyled and the Status column was empty, so a failed
expectation looked like a passed one. GX's site configuration cannot change that: its custom views directory is
searched after the packaged templates (jinja ChoiceLoader), so it can add templates but not override these.

So, by hand: the assets are vendored from the npm packages of the same versions (scripts/vendor-datadocs-assets,
checked against GX's own Subresource Integrity hashes where it pins them) into datadocs_static/; after each
Data Docs build, `localize_site` copies them into `<site>/static/jobcast-vendor/` (once, checked against
MANIFEST.json) and points every page's tags at them with relative paths, so a page opened from disk
(file://) or served from any prefix finds them. Links to web pages (GX's docs) stay as they are.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from pathlib import Path

from jobcast.errors import ConfigError

log = logging.getLogger(__name__)

STATIC = Path(__file__).with_name("datadocs_static")
VENDOR = "jobcast-vendor"
GX_IMAGES = "https://great-expectations-web-assets.s3.us-east-2.amazonaws.com/"
_TAG = re.compile(r"<(?:script|link|img)\b[^>]*>", re.I)
_URL = re.compile(r"""\b(src|href)=(["'])(https?://[^"']+)\2""", re.I)
_SRI = re.compile(r"""\s+(?:integrity|crossorigin)=(["'])[^"']*\1""", re.I)


def manifest() -> dict:
    try:
        return json.loads((STATIC / "MANIFEST.json").read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{STATIC / 'MANIFEST.json'}: cannot read the vendored Data Docs assets ({exc}); "
                          "run scripts/vendor-datadocs-assets") from exc


def install_assets(site: Path, files: dict[str, str]) -> Path:
    """Copy the vendored files into the site once; a file that is missing or differs is (re)copied."""
    dest = site / "static" / VENDOR
    for rel, digest in files.items():
        target = dest / rel
        if target.is_file() and target.stat().st_size == (STATIC / rel).stat().st_size:
            continue
        src = STATIC / rel
        data = src.read_bytes()
        if hashlib.sha256(data).hexdigest() != digest:
            raise ConfigError(f"{src}: does not match MANIFEST.json; run scripts/vendor-datadocs-assets")
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)
    return dest


def _gx_image(site: Path, name: str) -> Path | None:
    """GX's logo, which its navbar loads from S3: the copy GX ships with its own static files."""
    target = site / "static" / "images" / name
    if not target.is_file():
        import great_expectations

        src = Path(great_expectations.__file__).parent / "render" / "view" / "static" / "images" / name
        if not src.is_file():
            return None
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, target)
    return target


def localize_page(html: str, page_dir: Path, site: Path, assets: dict[str, dict]) -> tuple[str, list[str]]:
    """The page with its CDN tags pointed at the site's copies; also the addresses it could not map."""
    unmapped: list[str] = []

    def tag(m: re.Match) -> str:
        text = m.group(0)
        u = _URL.search(text)
        if not u:
            return text
        url = u.group(3)
        base = url.split("?", 1)[0]
        if base in assets:
            local = site / "static" / VENDOR / assets[base]["path"]
        elif base.startswith(GX_IMAGES):
            local = _gx_image(site, base[len(GX_IMAGES):])
        else:
            local = None
        if local is None:
            unmapped.append(url)
            return text
        rel = Path(os.path.relpath(local, page_dir)).as_posix()
        # The local copy is byte-identical to what the hash pinned, but a file:// page cannot make the CORS
        # request that `crossorigin` asks for: the script would be blocked. Same-origin files need neither.
        text = text[:u.start(3)] + rel + text[u.end(3):]
        return _SRI.sub("", text)

    return _TAG.sub(tag, html), unmapped


def localize_site(site: Path, *, since: float | None = None) -> int:
    """Point the pages of a Data Docs site at their local assets (only pages written at or after `since`, a
    time.time(), when given: the ones a build just wrote; all of them the first time, so a site built before
    jobcast localised its pages is mended too). Returns the number of pages rewritten."""
    if not site.is_dir():
        return 0
    if not (site / "static" / VENDOR).is_dir():
        since = None
    m = manifest()
    install_assets(site, m["files"])
    assets = m["assets"]
    hosts = {u.split("/", 3)[2] for u in assets} | {GX_IMAGES.split("/", 3)[2]}
    rewritten = 0
    for page in site.rglob("*.html"):
        if since is not None and page.stat().st_mtime < since - 1:
            continue
        html = page.read_text(encoding="utf-8")
        if not any(h in html for h in hosts):
            continue
        new, unmapped = localize_page(html, page.parent, site, assets)
        for url in sorted(set(unmapped)):
            log.warning("%s: loads %s, which is not vendored (scripts/vendor-datadocs-assets)", page, url)
        if new != html:
            tmp = page.with_name(page.name + ".tmp")
            tmp.write_text(new, encoding="utf-8")
            os.replace(tmp, page)
            rewritten += 1
    return rewritten
