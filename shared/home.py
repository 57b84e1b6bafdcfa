"""The agent home: its layout, and `koda init`, which creates it from the template.

`init_home` is idempotent and never overwrites a file the user changed: it records the hash of
every file it installs in `.koda-init.json`, updates a file only while it still has the hash it
was installed with, and leaves edited files alone (reporting them).
"""

from __future__ import annotations

import hashlib
import json
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .safe_write import make_folder, read_bytes, set_mode, write_file
from .settings import KodaSettings

MANIFEST = ".koda-init.json"
DATA_DIRS = ("drafts", "daily-logs", "analytics", "cookies", "runs")
LEARNINGS_CAP = 100


@dataclass(frozen=True)
class HomeLayout:
    """Where things live in an agent home."""

    root: Path

    @property
    def soul(self) -> Path:
        return self.root / "soul.md"

    @property
    def user(self) -> Path:
        return self.root / "user.md"

    @property
    def goals(self) -> Path:
        return self.root / "goals.md"

    @property
    def learnings(self) -> Path:
        return self.root / "learnings.md"

    @property
    def tasks(self) -> Path:
        return self.root / "tasks.json"

    @property
    def mcp_servers(self) -> Path:
        return self.root / "mcp-servers.json"

    @property
    def env(self) -> Path:
        return self.root / ".env"

    @property
    def skills(self) -> Path:
        return self.root / "skills"

    @property
    def scripts(self) -> Path:
        return self.root / "scripts"

    @property
    def scripts_manifest(self) -> Path:
        return self.scripts / "manifest.json"

    @property
    def sites(self) -> Path:
        return self.root / "sites.json"

    @property
    def screenshots(self) -> Path:
        return self.data / "screenshots"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def drafts(self) -> Path:
        return self.data / "drafts"

    @property
    def daily_logs(self) -> Path:
        return self.data / "daily-logs"

    @property
    def cookies(self) -> Path:
        return self.data / "cookies"

    @property
    def runs(self) -> Path:
        return self.data / "runs"

    def skill(self, name: str) -> Path:
        return self.skills / f"{name}.md"


@dataclass
class InitReport:
    """What `koda init` did, file by file (paths relative to the home)."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    kept_user_changes: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def template_files(settings: KodaSettings) -> dict[str, Path]:
    """Relative home path -> source file, from volumes/koda/ and the built-in skills/."""
    src = settings.source_dir
    files: dict[str, Path] = {}
    template = src / "volumes" / "koda"
    for path in sorted(template.rglob("*")):
        if path.is_file() and "__pycache__" not in path.parts:
            files[path.relative_to(template).as_posix()] = path
    for path in sorted((src / "skills").glob("*.md")):
        files[f"skills/{path.name}"] = path
    if not files:
        raise FileNotFoundError(f"no home template under {template}; is KODA_SOURCE_DIR right?")
    return files


def init_home(settings: KodaSettings) -> InitReport:
    """Create or update the agent home from the template; see the module docstring.

    The agent can write in its home, so every write here goes through `safe_write`: a link it
    planted (at a file or at any folder on the way) is refused with `UnsafePath`, never followed.
    """
    home = settings.expanded_home()
    home.mkdir(parents=True, exist_ok=True)
    try:
        installed: dict[str, str] = json.loads(read_bytes(home, MANIFEST) or b"{}")
    except ValueError:
        installed = {}
    report = InitReport()
    for rel, source in template_files(settings).items():
        new_hash = _sha(source)
        current_bytes = read_bytes(home, rel)
        if current_bytes is None:
            _install(home, rel, source)
            report.created.append(rel)
        else:
            current = hashlib.sha256(current_bytes).hexdigest()
            if current == new_hash:
                report.unchanged.append(rel)
            elif installed.get(rel) == current:
                _install(home, rel, source)  # untouched since we installed it: safe to update
                report.updated.append(rel)
            else:
                report.kept_user_changes.append(rel)
                continue  # keep recording the hash we installed, not the user's
        installed[rel] = new_hash
    for name in DATA_DIRS:
        make_folder(home, f"data/{name}", mode=0o700 if name == "cookies" else 0o755)
    make_folder(home, "scripts")
    if read_bytes(home, ".env") is None:
        example = read_bytes(home, ".env.example")
        write_file(home, ".env", example or b"", mode=0o600)
        report.created.append(".env")
    set_mode(home, ".env", 0o600)
    write_file(home, MANIFEST, json.dumps(installed, indent=1, sort_keys=True))
    return report


def _install(home: Path, rel: str, source: Path) -> None:
    """Copy a template file into the home with its mode (scripts stay executable)."""
    write_file(home, rel, source.read_bytes(), mode=stat.S_IMODE(source.stat().st_mode))
