"""Which script an action request runs, and whether it may run at all.

`script.<name>` runs the manifest's script `<name>`; any other name is an approved action kind,
run by the script whose `actions` lists it. A gated script, and every action kind, runs only with
an approval record in the `approvals` KV that is approved, names this action and carries the
gateway's signature: a request the model made up, one copied from web content, or a record
written into the bucket by another service cannot reach a gated script.
"""

from __future__ import annotations

from dataclasses import dataclass

from koda.shared.approvals import ApprovalStore, genuine
from koda.shared.configfile import load_config
from koda.shared.errors import KodaError
from koda.shared.home import HomeLayout
from koda.shared.messages import ActionRequest
from koda.shared.scripts import ScriptManifest, ScriptSpec

SCRIPT_PREFIX = "script."


@dataclass
class Refused(KodaError):
    """The request cannot run as asked; `reason` is safe to show the caller."""

    reason: str
    outcome: str = "refused"

    def __str__(self) -> str:
        return self.reason


def load_manifest(layout: HomeLayout) -> ScriptManifest:
    """scripts/manifest.json, read on every request so an edit needs no restart.

    Raises `ConfigError` naming file, line and field when it is broken.
    """
    if not layout.scripts_manifest.exists():
        return ScriptManifest()
    return load_config(layout.scripts_manifest, ScriptManifest)


def script_for(manifest: ScriptManifest, request: ActionRequest, layout: HomeLayout) -> ScriptSpec:
    """The script a request names, directly or through an action kind; `Refused` if none."""
    if request.name.startswith(SCRIPT_PREFIX):
        name = request.name.removeprefix(SCRIPT_PREFIX)
        spec = manifest.get(name)
        if spec is None:
            known = ", ".join(s.name for s in manifest.scripts) or "none"
            raise Refused(f"no script {name!r} in {layout.scripts_manifest} (known: {known})",
                          "unknown")
        return spec
    spec = manifest.for_action(request.name)
    if spec is None:
        raise Refused(f"no script in {layout.scripts_manifest} lists action {request.name!r} "
                      "in its `actions`", "unknown")
    return spec


def needs_approval(spec: ScriptSpec, request: ActionRequest) -> bool:
    return spec.gated or not request.name.startswith(SCRIPT_PREFIX)


async def check_approval(store: ApprovalStore, request: ActionRequest) -> None:
    """Refuse unless `request.approval_id` is an approved record for this very action."""
    if not request.approval_id:
        raise Refused(f"{request.name} needs a person's approval: propose it with propose_action",
                      "unapproved")
    found = await store.get(request.approval_id)
    if found is None:
        raise Refused(f"approval {request.approval_id} does not exist", "unapproved")
    record = found[0]
    if record.status != "approved":
        raise Refused(f"approval {request.approval_id} is {record.status}, not approved",
                      "unapproved")
    wanted = {request.name, request.name.removeprefix(SCRIPT_PREFIX)}
    if record.action not in wanted:
        raise Refused(f"approval {request.approval_id} is for {record.action}, not {request.name}",
                      "unapproved")
    # Anyone who may propose may also write the bucket: only the gateway's signature proves
    # that a person decided (the gateway checks the approver allowlist and the console token).
    verify_key = store.bus.settings.approval_verify_key
    if not verify_key:
        raise Refused(f"{request.name} needs a verified approval, and this actions service has no "
                      "KODA_APPROVAL_VERIFY_KEY to check one: nothing gated runs", "unapproved")
    if not genuine(record, verify_key):
        raise Refused(f"approval {request.approval_id} does not carry the gateway's signature: "
                      "it was not decided by a person through the gateway", "forged")
    # A person approved these arguments, once: other arguments or a second key are not approved.
    if request.args != record.args:
        raise Refused(f"approval {request.approval_id} was given for other arguments", "unapproved")
    if request.idempotency_key != (record.idempotency_key or f"approval:{record.id}"):
        raise Refused(f"approval {request.approval_id} was given for one run, under its own key",
                      "unapproved")
