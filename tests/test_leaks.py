"""What the service keeps on disk and says about itself stays with its operator (issue 13, point 5)."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from conftest import UNLIMITED, Served, running_service


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_data_directory_the_admin_token_and_the_aof_are_the_service_users_only(data_dir: Path):
    served = Served(data_dir)
    try:
        assert served.http.get("/readyz").status_code == 200
        assert served.http.post("/api/v1/blogs", json={"id": "kyiv", "title": "x"}).status_code == 401
    finally:
        assert served.stop() == 0
    assert _mode(data_dir) == 0o700
    assert _mode(data_dir / "admin-token") == 0o600
    kept = [path for path in data_dir.rglob("*") if path.is_file() or path.is_dir()]
    assert any("appendonly" in path.name for path in kept), kept
    for path in kept:
        if path.is_symlink() or path.is_socket():
            continue
        assert _mode(path) & 0o077 == 0, f"{path.relative_to(data_dir)} is {oct(_mode(path))}"


def test_a_data_directory_made_by_someone_else_is_made_private_at_start(data_dir: Path):
    data_dir.mkdir(mode=0o755)
    data_dir.chmod(0o755)
    served = Served(data_dir)
    try:
        assert _mode(data_dir) == 0o700
    finally:
        served.stop()


@pytest.mark.parametrize("url", ["unix:///tmp/liveblog-nowhere/secret-place/redis.sock", "redis://127.0.0.1:1/0"])
async def test_readyz_says_storage_is_unreachable_and_not_where_it_is(url):
    async with running_service(url, UNLIMITED) as unready:
        response = await unready.http.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable", "reason": "storage unreachable"}


async def test_a_title_made_from_a_body_carries_no_markup_its_entities_spelled(service):
    await service.create_blog()
    body = (
        "<p>&lt;script&gt;alert(1)&lt;/script&gt;Sirens &lt;img src=x onerror=alert(2)&gt;"
        " in Kyiv &amp; Lviv, 3 &lt; 4</p>"
    )
    await service.post(body=body)
    feed = (await service.http.get("/blogs/ukraine/feed.json")).json()
    (item,) = feed["items"]
    for text in (item["title"], item["content_text"]):
        assert "<script" not in text and "<img" not in text, text
        assert "Sirens" in text and "Kyiv & Lviv, 3 < 4" in text, text
    atom = (await service.http.get("/blogs/ukraine/feed.atom")).text
    assert "&lt;script" not in atom and "&lt;img" not in atom


async def test_a_revoked_token_and_one_that_never_existed_get_the_same_answer(service):
    """Nobody learns which token ids exist by trying them: revoked, never minted, a real id with
    another secret and plain garbage all get the same 401, word for word."""
    await service.create_blog()
    revoked = await service.mint(name="Gone")
    assert (await service.http.delete(f"/api/v1/tokens/{revoked['id']}", headers=service.auth())).status_code == 204
    alive = await service.mint(name="Here")
    token_id = alive["token"].split("_", 2)[1]
    tried = {
        "revoked": revoked["token"],
        "never minted": "lb_" + "0" * len(token_id) + "_" + alive["token"].split("_", 2)[2],
        "a real id, another secret": f"lb_{token_id}_{'x' * 32}",
        "garbage": "not-a-token",
    }
    answers = {}
    for what, token in tried.items():
        response = await service.http.post(
            "/api/v1/blogs/ukraine/entries", json={"body": "<p>x</p>"}, headers=service.auth(token)
        )
        answers[what] = (response.status_code, response.text, response.headers.get("www-authenticate"))
    assert len(set(answers.values())) == 1, answers
    assert answers["revoked"][0] == 401
