"""sites.json: the shipped example loads, and mistakes are reported by file, line and field."""

from __future__ import annotations

from pathlib import Path

from koda.shared.doctor import check_home
from koda.shared.home import HomeLayout, init_home
from koda.shared.settings import SOURCE_DIR, KodaSettings
from koda.shared.sites import load_sites

BROKEN = """{
  "sites": {
    "members": {
      "start_url": "https://example.org/members",
      "login_wall": {"url_pattern": "(/login"},
      "login": {"recipe": {"url": "https://example.org/login",
                           "fields": {"#password": "hunter2 is my password"},
                           "submit": "button"}}
    },
    "Bad Name": {"start_url": "x", "login_wall": {"status": [401]}, "login": {"skill": "s"}}
  }
}
"""


def test_the_template_example_is_valid() -> None:
    sites = load_sites(SOURCE_DIR / "volumes" / "koda" / "sites.json")
    skool = sites.sites["skool"]
    assert skool.login.recipe is not None
    assert set(skool.login.recipe.fields.values()) == {"SKOOL_EMAIL", "SKOOL_PASSWORD"}


def test_doctor_names_file_line_and_field_of_every_mistake(tmp_path: Path) -> None:
    settings = KodaSettings(home=tmp_path / "home", state_dir=tmp_path / "state")
    init_home(settings)
    layout = HomeLayout(settings.expanded_home())
    layout.sites.write_text(BROKEN)
    found = [str(p) for p in check_home(layout, {"ANTHROPIC_API_KEY": "sk-test-123456"})]
    where = f"{layout.sites}:"
    assert any(p.startswith(where + "5: sites.members.login_wall.url_pattern: not a regular")
               for p in found), found
    assert any(p.startswith(where + "7: sites.members.login.recipe.fields: ") and "NAME of a .env" in p
               for p in found), found
    assert any(p.startswith(where) and "Bad Name" in p and "should match" in p for p in found), found
    assert "hunter2" not in "\n".join(found)  # a pasted password is never echoed


def test_doctor_finds_a_script_whose_site_is_not_in_sites_json(tmp_path: Path) -> None:
    settings = KodaSettings(home=tmp_path / "home", state_dir=tmp_path / "state")
    init_home(settings)
    layout = HomeLayout(settings.expanded_home())
    assert not check_home(layout, {"ANTHROPIC_API_KEY": "sk-test-123456"})  # the template is fine
    layout.sites.write_text('{"sites": {}}')
    found = [str(p) for p in check_home(layout, {"ANTHROPIC_API_KEY": "sk-test-123456"})]
    assert any(p.startswith(f"{layout.scripts_manifest}:") and "scripts[0].site: site 'skool'" in p
               for p in found), found
