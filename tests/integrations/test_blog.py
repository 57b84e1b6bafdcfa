"""blog.publish to WordPress (application password) and Ghost (Admin API token): a draft first,
then published, once, whatever is retried after a kill."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from tests.fakes.ghost import FakeGhost
from tests.fakes.wordpress import FakeWordPress
from tests.integrations.helpers import make_home, output, run, start_and_kill_when

USER, APP_PASSWORD = "creator", "abcd EFGH 1234 ijkl MNOP 5678"
POST = "# Why I moved to plain files\n\nFiles **outlive** apps.\n\n## What changed\n\n- less lock-in\n- " \
       "[faster backups](https://example.com/backups)\n"


def home_for(tmp_path: Path, wp: FakeWordPress | None, ghost: FakeGhost | None,
             wp_password: str = APP_PASSWORD):  # type: ignore[no-untyped-def]
    env: dict[str, str] = {}
    if wp:
        env |= {"WORDPRESS_URL": wp.url, "WORDPRESS_USER": USER, "WORDPRESS_APP_PASSWORD": f'"{wp_password}"'}
    if ghost:
        env |= {"GHOST_URL": ghost.url, "GHOST_ADMIN_API_KEY": ghost.admin_api_key}
    layout = make_home(tmp_path, env)
    (layout.data / "drafts" / "blog-post.1" ).mkdir(parents=True)
    (layout.data / "drafts" / "blog-post.1" / "final.md").write_text(POST)
    return layout


def test_the_post_is_drafted_then_published_on_both_blogs(tmp_path: Path) -> None:
    with FakeWordPress(USER, APP_PASSWORD) as wp, FakeGhost() as ghost:
        layout = home_for(tmp_path, wp, ghost)
        args = {"draft": "data/drafts/blog-post.1/final.md", "tags": ["tools"], "excerpt": "Files win."}
        out = output(run(layout, "blog-publish", args))
        [wp_post] = wp.published()
        assert wp_post["title"] == "Why I moved to plain files"
        assert "<strong>outlive</strong>" in wp_post["content"]
        assert "<li>less lock-in</li>" in wp_post["content"]
        assert list(wp.tags.values()) == ["tools"] and wp_post["tags"] == list(wp.tags)
        # Draft then publish: the create asked for a draft, a second call published it.
        creates = [r.json() for r in wp.requests("POST", "/wp-json/wp/v2/posts")]
        assert [c["status"] for c in creates] == ["draft"]
        assert wp.requests("POST", f"/wp-json/wp/v2/posts/{wp_post['id']}")[0].json() == {"status": "publish"}
        user, _, password = base64.b64decode(
            wp.requests("POST")[0].headers["authorization"][6:]).decode().partition(":")
        assert (user, password) == (USER, APP_PASSWORD)
        [ghost_post] = ghost.published()
        assert ghost_post["title"] == "Why I moved to plain files"
        ghost_creates = ghost.requests("POST", "/ghost/api/admin/posts/")
        assert [r.json()["posts"][0]["status"] for r in ghost_creates] == ["draft"]
        assert out["wordpress"]["url"] == f"{wp.url}/{wp_post['slug']}/"
        assert out["ghost"]["url"] == ghost_post["url"]
        blog = json.loads((layout.data / "analytics" / "blog.json").read_text())
        assert sorted(i["blog"] for i in blog["items"]) == ["ghost", "wordpress"]
        again = output(run(layout, "blog-publish", args))
        assert again["wordpress"]["duplicate"] and again["ghost"]["duplicate"]
        assert len(wp.posts) == 1 and len(ghost.posts) == 1


def test_a_kill_after_the_draft_was_made_publishes_that_draft(tmp_path: Path) -> None:
    with FakeWordPress(USER, APP_PASSWORD) as wp, FakeGhost() as ghost:
        layout = home_for(tmp_path, wp, ghost)
        args = {"title": "Crash-proof", "content": "One post, whatever happens."}
        wp.stall(lambda r: r.method == "POST" and r.path == "/wp-json/wp/v2/posts")
        start_and_kill_when(layout, "blog-publish", args, "approval:b1", wp.stalled)
        wp.release()
        assert [p["status"] for p in wp.posts.values()] == ["draft"]
        output(run(layout, "blog-publish", args, key="approval:b1"))
        assert [p["status"] for p in wp.posts.values()] == ["publish"]
        assert len(ghost.posts) == 1 and ghost.published()
        # Ghost too: killed while its draft was being made.
        ghost.stall(lambda r: r.method == "POST")
        start_and_kill_when(layout, "blog-publish", {"title": "Second", "content": "Two."}, "approval:b2",
                            ghost.stalled)
        ghost.release()
        output(run(layout, "blog-publish", {"title": "Second", "content": "Two."}, key="approval:b2"))
        assert sorted(p["title"] for p in ghost.published()) == ["Crash-proof", "Second"]
        assert len(ghost.posts) == 2 and len(wp.posts) == 2


def test_rejected_credentials_exit_77_with_the_fix(tmp_path: Path) -> None:
    with FakeWordPress(USER, APP_PASSWORD) as wp:
        layout = home_for(tmp_path, wp, None, wp_password="zzzz zzzz zzzz zzzz")
        result = run(layout, "blog-publish", {"title": "T", "content": "C"})
        assert result.exit_code == 77 and "koda connect wordpress" in result.stderr
        assert "incorrect_password" in result.stderr and wp.posts == {}
    with FakeGhost() as ghost:
        layout = home_for(tmp_path / "g", None, ghost)
        (layout.env).write_text(f"GHOST_URL={ghost.url}\nGHOST_ADMIN_API_KEY={ghost.key_id}:{'ab' * 32}\n")
        result = run(layout, "blog-publish", {"title": "T", "content": "C"})
        assert result.exit_code == 77 and "koda connect ghost" in result.stderr
        assert "invalid signature" in result.stderr and ghost.posts == {}
