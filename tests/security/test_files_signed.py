"""Signed ``/files`` URLs: an expiry is required and bounded, a write names its path, and
sandlot's own ``v2_`` HMAC signatures work beside E2B's ``v1_`` (which the SDK computes).
Real server, real sandbox, the e2b SDK signing."""

from __future__ import annotations

import time

import httpx
import pytest
from e2b import Sandbox

from sandlot.agent import files
from tests._support.server import Server

pytestmark = pytest.mark.usefixtures("e2b_env")


def test_signed_urls_are_bounded_and_bound(server: Server, cleanup: list[str]) -> None:
    sbx = Sandbox.create(timeout=120, secure=True)
    cleanup.append(sbx.sandbox_id)
    token = sbx._envd_access_token
    assert token
    sbx.files.write("/home/user/s.txt", "signed")
    host = {"host": f"49983-{sbx.sandbox_id}.sandlot.test"}

    def get(url: str) -> httpx.Response:
        return httpx.get(server.url + url[url.index("/files") :], headers=host, timeout=10)

    assert get(sbx.download_url("/home/user/s.txt", use_signature_expiration=60)).text == "signed"
    forever = get(sbx.download_url("/home/user/s.txt"))
    assert forever.status_code == 401 and "signature_expiration" in forever.json()["message"]
    far = get(sbx.download_url("/home/user/s.txt", use_signature_expiration=files.MAX_SIGNATURE_LIFETIME + 60))
    assert far.status_code == 400 and "too far ahead" in far.json()["message"]

    anywhere = sbx.upload_url("", use_signature_expiration=60)  # no path: parts name their own
    answer = httpx.post(
        server.url + anywhere[anywhere.index("/files") :], headers=host, files={"file": ("/home/user/x", b"x")}
    )
    assert answer.status_code == 401 and "name the path" in answer.json()["message"]

    expiry = int(time.time()) + 60
    params = {"path": "/home/user/s.txt", "signature_expiration": str(expiry)}
    good = files.hmac_signature(sbx.sandbox_id, "/home/user/s.txt", "read", "", token, expiry)
    ok = httpx.get(f"{server.url}/files", params={**params, "signature": good}, headers=host)
    assert ok.status_code == 200 and ok.text == "signed"
    other_path = files.hmac_signature(sbx.sandbox_id, "/home/user/other", "read", "", token, expiry)
    bad = httpx.get(f"{server.url}/files", params={**params, "signature": other_path}, headers=host)
    assert bad.status_code == 401
    colon = httpx.get(
        f"{server.url}/files", params={**params, "username": "a:b", "signature": good}, headers=host
    )
    assert colon.status_code == 400
