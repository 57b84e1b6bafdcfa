"""`koda init` and `koda doctor` through the real command, on temp homes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from koda.shared.settings import SOURCE_DIR
from koda.shared.tasks import json_schema, load_tasks

KODA = str(Path(sys.executable).parent / "koda")


def koda(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items()
                if k not in ("ANTHROPIC_API_KEY", "CLAUDE_CODE_OAUTH_TOKEN")}
    full_env.update(KODA_HOME=str(home), **env)
    return subprocess.run([KODA, *args], env=full_env, capture_output=True, text=True, timeout=60)


def test_init_creates_a_realistic_home_and_is_idempotent(tmp_path: Path) -> None:
    home = tmp_path / "home"
    first = koda(home, "init")
    assert first.returncode == 0, first.stderr
    for rel in ("soul.md", "user.md", "goals.md", "learnings.md", "tasks.json", "mcp-servers.json",
                ".env.example", "skills/self-heal.md", "data/drafts", "data/daily-logs",
                "data/cookies", "scripts/manifest.json"):
        assert (home / rel).exists(), rel
    assert "Never" in (home / "soul.md").read_text()
    assert (home / ".env").stat().st_mode & 0o777 == 0o600
    assert (home / "data/cookies").stat().st_mode & 0o777 == 0o700
    tasks = load_tasks(home / "tasks.json")
    assert len(tasks.tasks) >= 5 and not any(t.enabled for t in tasks.tasks)
    assert any(t.steps for t in tasks.tasks) and any(t.script for t in tasks.tasks)
    assert any(t.gated for t in tasks.tasks)
    second = koda(home, "init")
    assert "up to date" in second.stdout


def test_init_never_overwrites_a_file_the_user_changed(tmp_path: Path) -> None:
    home = tmp_path / "home"
    koda(home, "init")
    (home / "soul.md").write_text("# My own soul\n")
    (home / "goals.md").unlink()
    # Simulate a newer template for an untouched file by editing what init recorded.
    manifest = json.loads((home / ".koda-init.json").read_text())
    import hashlib

    old_user = "old template text\n"
    (home / "user.md").write_text(old_user)
    manifest["user.md"] = hashlib.sha256(old_user.encode()).hexdigest()
    (home / ".koda-init.json").write_text(json.dumps(manifest))
    out = koda(home, "init").stdout
    assert (home / "soul.md").read_text() == "# My own soul\n"
    assert "kept (you changed them): soul.md" in out
    assert (home / "goals.md").exists()  # a deleted file comes back
    assert (home / "user.md").read_text() == (SOURCE_DIR / "volumes/koda/user.md").read_text()


def test_doctor_passes_a_fresh_home_with_a_credential(tmp_path: Path) -> None:
    home = tmp_path / "home"
    koda(home, "init")
    result = koda(home, "doctor", ANTHROPIC_API_KEY="sk-test-key-123")
    assert result.returncode == 0, result.stdout
    missing = koda(home, "doctor")
    assert missing.returncode == 1 and "no Claude credential" in missing.stdout


def test_doctor_names_file_line_and_field_for_a_broken_tasks_json(tmp_path: Path) -> None:
    home = tmp_path / "home"
    koda(home, "init")
    (home / "tasks.json").write_text(
        '{\n'
        '  "tasks": [\n'
        '    {"id": "ok", "cron": "0 9 * * *", "prompt": "hello"},\n'
        '    {"id": "bad-cron", "cron": "0 25 * * *", "prompt": "x"},\n'
        '    {"id": "ok", "prompt": "duplicate"},\n'
        '    {"id": "no-skill", "skill": "does-not-exist"},\n'
        '    {"id": "typo", "prompt": "x", "max_turn": 40},\n'
        '    {"id": "no-script", "script": "nope"}\n'
        '  ]\n'
        '}\n')
    os.chmod(home / ".env", 0o644)
    (home / "learnings.md").write_text("".join(f"- lesson {i}\n" for i in range(120)))
    result = koda(home, "doctor", ANTHROPIC_API_KEY="sk-test-key-123")
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    tasks = str(home / "tasks.json")
    expected = [
        f"{tasks}:4: tasks[1].cron: hour: 25 is outside 0-23",
        f"{tasks}:5: tasks[2].id: duplicate task id 'ok' (first at tasks[0])",
        f"{tasks}:7: tasks[4].max_turn: unknown field",
    ]
    for want in expected:
        assert any(line.startswith(want) for line in lines), (want, lines)
    # References are checked in the same pass as the schema errors.
    assert any(line.startswith(f"{tasks}:6: tasks[3].skill") and "does-not-exist" in line
               for line in lines), lines
    assert any(line.startswith(f"{tasks}:8: tasks[5].script") and "'nope'" in line
               for line in lines), lines
    assert any(".env: (mode)" in line and "0644" in line for line in lines), lines
    assert any("learnings.md:101" in line and "120 lines" in line for line in lines), lines


def test_doctor_reports_a_json_syntax_error_with_its_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    koda(home, "init")
    (home / "tasks.json").write_text('{\n  "tasks": [\n    {"id": "a",}\n  ]\n}\n')
    result = koda(home, "doctor", ANTHROPIC_API_KEY="sk-test-key-123")
    assert result.returncode == 1
    assert f"{home / 'tasks.json'}:3: (syntax)" in result.stdout


def test_shipped_schema_matches_the_model() -> None:
    shipped = json.loads((SOURCE_DIR / "volumes/koda/tasks.schema.json").read_text())
    assert shipped == json_schema(), "run `koda schema --write` after changing shared/tasks.py"


def test_template_tasks_validate_against_the_shipped_schema() -> None:
    import jsonschema

    schema = json.loads((SOURCE_DIR / "volumes/koda/tasks.schema.json").read_text())
    data = json.loads((SOURCE_DIR / "volumes/koda/tasks.json").read_text())
    jsonschema.validate(data, schema)


def test_init_on_a_home_it_may_not_write_says_which_folder_uid_and_fix() -> None:
    """A host folder mounted as the home but owned by another user (compose runs Koda as uid
    10001): one line naming the folder, the uid and the chown that fixes it, no traceback."""
    # Not under pytest's tmp_path: its root is private to root, and the user here is nobody.
    base = Path(tempfile.mkdtemp(prefix="koda-perm-"))
    base.chmod(0o755)  # the unprivileged user may reach the folder, not write it
    home = base / "home"
    home.mkdir()
    state = base / "state"
    state.mkdir()
    state.chmod(0o777)
    env = {"PATH": os.environ["PATH"], "KODA_HOME": str(home), "KODA_STATE_DIR": str(state),
           "HOME": str(state)}
    out = subprocess.run(["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                          sys.executable, "-m", "koda", "init"],
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 1, out
    assert "Traceback" not in out.stderr, out.stderr
    assert str(home) in out.stderr and "uid 65534" in out.stderr, out.stderr
    assert f"chown -R 65534:65534 {home}" in out.stderr, out.stderr
    shutil.rmtree(base)
