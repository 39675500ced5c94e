"""GraphiQL in dev mode works offline: its page loads React and GraphiQL from the gateway itself,
never from a public CDN; production serves neither the page nor its files."""

import base64
import hashlib
import re
from urllib.parse import urljoin, urlsplit

import httpx
import pytest

from tests.factories import health_record
from tests.stack import reference_connectors, running_gateway

REFERENCE = re.compile(r"""<(?:script|link)\b[^>]*?\b(?:src|href)="([^"]+)"[^>]*>""")
INTEGRITY = re.compile(r'\b(?:src|href)="([^"]+)"[^>]*?\bintegrity="([^"]+)"')


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("graphiql")
    with reference_connectors(tmp, {"health": [health_record()]}) as configured:
        yield configured


@pytest.fixture(scope="module")
def page(tmp_path_factory, sources):
    with running_gateway(tmp_path_factory.mktemp("dev"), sources) as gateway:
        response = httpx.get(f"{gateway.url}/graphql", headers={"accept": "text/html"})
        assert response.status_code == 200
        assets = {
            ref: httpx.get(urljoin(str(response.url), ref))
            for ref in REFERENCE.findall(response.text)
            if not ref.startswith("data:")
        }
        yield gateway, response, assets


def test_the_dev_page_names_no_url_outside_the_gateway(page):
    _, response, _ = page
    assert "graphiql" in response.text.lower()
    assert not re.search(r"https?://|(?:src|href)=\"//", response.text, re.I)


def test_each_asset_the_page_loads_is_served_by_the_gateway_as_javascript_or_css(page):
    gateway, _, assets = page
    assert len(assets) == 6  # React, ReactDOM, GraphiQL and its explorer plugin: script + style
    for ref, asset in assets.items():
        assert urlsplit(str(asset.url)).netloc == urlsplit(gateway.url).netloc, ref
        assert asset.status_code == 200, ref
        kind = asset.headers["content-type"].split(";")[0]
        expected = (
            "text/css" if ref.endswith(".css") else ("text/javascript", "application/javascript")
        )
        assert kind in expected, (ref, kind)


def test_each_asset_is_the_exact_file_its_integrity_hash_names(page):
    _, response, assets = page
    for ref, integrity in INTEGRITY.findall(response.text):
        digest = base64.b64encode(hashlib.sha384(assets[ref].content).digest()).decode()
        assert integrity == f"sha384-{digest}", ref
    assert len(INTEGRITY.findall(response.text)) == len(assets)


def test_production_serves_no_graphiql_and_none_of_its_files(
    tmp_path, sources, page, production_settings
):
    _, _, assets = page
    with running_gateway(tmp_path, sources, **production_settings(tmp_path)) as gateway:
        html = httpx.get(f"{gateway.url}/graphql", headers={"accept": "text/html"})
        assert "graphiql" not in html.text.lower()
        for ref in assets:
            path = urlsplit(urljoin(f"{gateway.url}/graphql", ref)).path
            assert httpx.get(f"{gateway.url}{path}").status_code == 404, ref
