"""social.post to Bluesky: a real AT Protocol exchange with a fake PDS, checked against the
protocol's own lexicons, posted once however often it is retried."""

from __future__ import annotations

from pathlib import Path

from tests.fakes.bluesky import FakeBluesky
from tests.integrations.helpers import make_home, output, png, run, start_and_kill_when
from tests.integrations.lexicon import Lexicons

HANDLE, PASSWORD = "creator.example.com", "abcd-efgh-ijkl-mnop"


def home_for(tmp_path: Path, pds: FakeBluesky, password: str = PASSWORD):  # type: ignore[no-untyped-def]
    layout = make_home(tmp_path, {"BLUESKY_HANDLE": HANDLE, "BLUESKY_APP_PASSWORD": password,
                                  "BLUESKY_SERVICE_URL": pds.url})
    (layout.data / "drafts" / "run1").mkdir(parents=True)
    (layout.data / "drafts" / "run1" / "card.png").write_bytes(png())
    return layout


def lexicon_problems(pds: FakeBluesky) -> list[str]:
    lex = Lexicons()
    problems = []
    for ex in pds.exchanges:
        nsid = ex.request.path.removeprefix("/xrpc/")
        is_json = ex.request.headers.get("content-type", "").startswith("application/json")
        body = ex.request.json() if is_json else None
        problems += lex.check_exchange(nsid, ex.request.query, body, ex.reply.status, ex.reply.json())
    for post in pds.posts():
        problems += lex.check(lex.method("app.bsky.feed.post"), post["value"], "app.bsky.feed.post", "record")
    return problems


def test_a_post_with_link_mention_tag_and_image_lands_once(tmp_path: Path) -> None:
    with FakeBluesky(HANDLE, PASSWORD, {"friend.bsky.social": "did:plc:friend0000000000"}) as pds:
        layout = home_for(tmp_path, pds)
        text = "Shipped the new editor 🎉 with @friend.bsky.social #buildinpublic"
        args = {"text": text, "link": "https://example.com/editor", "image": "data/drafts/run1/card.png",
                "image_alt": "The editor"}
        out = output(run(layout, "social-post", args))
        [post] = pds.posts()
        record = post["value"]
        assert record["text"] == text + " https://example.com/editor"
        encoded = record["text"].encode()
        features = {f["features"][0]["$type"].split("#")[1]:
                    (encoded[f["index"]["byteStart"]:f["index"]["byteEnd"]].decode(), f["features"][0])
                    for f in record["facets"]}
        # Byte offsets, not character offsets: the emoji before them is four bytes.
        assert features["mention"] == ("@friend.bsky.social", {"$type": "app.bsky.richtext.facet#mention",
                                                               "did": "did:plc:friend0000000000"})
        assert features["link"][0] == "https://example.com/editor"
        assert features["tag"][1]["tag"] == "buildinpublic"
        [image] = record["embed"]["images"]
        assert pds.blobs[image["image"]["ref"]["$link"]] == png() and image["alt"] == "The editor"
        assert out["bluesky"]["uri"] == post["uri"]
        assert lexicon_problems(pds) == []
        # A second delivery of the same approval posts nothing, and says so.
        again = output(run(layout, "social-post", args))
        assert again["bluesky"]["duplicate"] and len(pds.posts()) == 1
        social = (layout.data / "analytics" / "social.json").read_text()
        assert post["uri"].rsplit("/", 1)[1] in social


def test_a_kill_after_the_record_was_created_does_not_post_twice(tmp_path: Path) -> None:
    with FakeBluesky(HANDLE, PASSWORD) as pds:
        layout = home_for(tmp_path, pds)
        pds.stall(lambda r: r.path.endswith("createRecord"))
        start_and_kill_when(layout, "social-post", {"text": "Once only"}, "approval:once", pds.stalled)
        pds.release()
        assert len(pds.posts()) == 1  # the PDS made it; the script never heard
        out = output(run(layout, "social-post", {"text": "Once only"}, key="approval:once"))
        assert len(pds.posts()) == 1 and out["bluesky"]["uri"] == pds.posts()[0]["uri"]
        assert len(pds.requests("POST", "/xrpc/com.atproto.repo.createRecord")) == 1


def test_an_expired_access_token_is_refreshed_once(tmp_path: Path) -> None:
    with FakeBluesky(HANDLE, PASSWORD) as pds:
        layout = home_for(tmp_path, pds)
        # The token expires right after the session is made, before the first authorised call.
        pds.stall(lambda r: r.path.endswith("createSession"))
        import threading

        def expire() -> None:
            pds.stalled.wait(30)
            pds.expire_access_tokens()
            pds.release()
        threading.Thread(target=expire, daemon=True).start()
        output(run(layout, "social-post", {"text": "After a refresh"}))
        assert len(pds.posts()) == 1
        assert [r.path for r in pds.requests("POST")].count("/xrpc/com.atproto.server.refreshSession") == 1
        replies = [e.reply.json() for e in pds.exchanges if e.reply.status == 400]
        assert {"error": "ExpiredToken", "message": "Token has expired"} in replies
        assert lexicon_problems(pds) == []


def test_a_rate_limited_post_says_until_when_and_a_retry_posts_once(tmp_path: Path) -> None:
    with FakeBluesky(HANDLE, PASSWORD) as pds:
        layout = home_for(tmp_path, pds)
        pds.rate_limited = 1
        limited = run(layout, "social-post", {"text": "Later"}, key="approval:rl")
        assert limited.exit_code == 1 and "rate limited until epoch" in limited.stderr
        assert "RateLimitExceeded" in limited.stderr and pds.posts() == []
        output(run(layout, "social-post", {"text": "Later"}, key="approval:rl"))
        assert len(pds.posts()) == 1
        assert lexicon_problems(pds) == []


def test_a_wrong_app_password_exits_77_and_names_the_fix(tmp_path: Path) -> None:
    with FakeBluesky(HANDLE, PASSWORD) as pds:
        layout = home_for(tmp_path, pds, password="wrong-pass-word")
        result = run(layout, "social-post", {"text": "Never"})
        assert result.exit_code == 77 and "koda connect bluesky" in result.stderr
        assert "wrong-pass-word" not in result.stderr + result.stdout
        assert pds.posts() == []


def test_the_lexicon_check_catches_a_fake_that_drifted() -> None:
    lex = Lexicons()
    post = lex.method("app.bsky.feed.post")
    good = {"$type": "app.bsky.feed.post", "text": "hi", "createdAt": "2026-12-02T09:00:00.000Z"}
    assert lex.check(post, good, "app.bsky.feed.post") == []
    assert lex.check(post, {**good, "createdAt": None}, "app.bsky.feed.post")
    bad_facet = {**good, "facets": [{"index": {"byteStart": 0, "byteEnd": 2},
                                     "features": [{"$type": "app.bsky.richtext.facet#url", "uri": "x"}]}]}
    assert lex.check(post, bad_facet, "app.bsky.feed.post")
    # A createRecord reply without its cid, and an error reply without an error name.
    assert lex.check_exchange("com.atproto.repo.createRecord", {}, {
        "repo": "did:plc:abc", "collection": "app.bsky.feed.post", "record": good}, 200,
        {"uri": "at://did:plc:abc/app.bsky.feed.post/3kabc"})
    assert lex.check_exchange("com.atproto.server.createSession", {}, {
        "identifier": "a.example.com", "password": "x"}, 401, {"message": "no"})
