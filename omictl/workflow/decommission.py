"""The decommission workflow: provider cleanup, then registry revocation (CLI.md "Decommission").

Steps, in order, each reported as a :class:`StepEvent` (this module never prints):

``resolve``        read the app and binding from the registry (pinned key), and check the
                   local key IS the app's master key before anything destructive;
``confirm``        ask for consent (the CLI types-the-service-id prompt, or ``--yes``);
``terminate``      sign and send the DELETE to the provider;
``verify_receipt`` accept the receipt only if the service key on file signed it, for this
                   app and service, with status ``success``;
``unbind``         sign and send the unbind request embedding the receipt;
``verify_record``  the registry-signed revocation record verifies under the pinned key;
``archive``        write the evidence bundle (as soon as the record verifies);
``check_revoked``  re-read the binding: REVOKED.

Every step is journalled (:mod:`omictl.workflow.journal`), and every record is on disk
before the request it announces leaves and before a run ends, so a re-run resumes: a held
receipt is reused and the provider never sees a second DELETE once a verified receipt is
held.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from omictl.core.appid import parse_app_id, validate_service_id
from omictl.core.envelope import Envelope, Signer, key_id, sign_envelope, to_hex
from omictl.core.evidence import build_bundle
from omictl.core.messages import (
    DATA_HANDLING,
    App,
    Binding,
    Receipt,
    RevocationRecord,
    termination_request_data,
    unbind_request_data,
    verify_receipt,
    verify_revocation_record,
)
from omictl.errors import (
    Aborted,
    ExitCode,
    Interrupted,
    OmictlError,
    PartiallyDone,
    ProtocolError,
    RemoteRejected,
    RemoteUnavailable,
    SignalInterrupt,
    UsageError,
    VerificationError,
    json_text,
    shown,
)
from omictl.workflow.archive import Archive
from omictl.workflow.journal import Journal, JournalError, JournalStore, check_ids_are_paths

if TYPE_CHECKING:
    from omictl.transport.provider import ProviderClient
    from omictl.transport.registry import RegistryClient

#: Dry-run envelopes are back-dated this far, far outside PROTOCOL.md's 300 s window.
DRY_RUN_BACKDATE_S = 86_400

STEPS = (
    "resolve",
    "confirm",
    "terminate",
    "verify_receipt",
    "unbind",
    "verify_record",
    "archive",
    "check_revoked",
)


@dataclass(frozen=True)
class Target:
    """One service to decommission."""

    app_id: str
    service_id: str
    data_handling: str = "wipe"
    skip_provider: bool = False

    def validate(self) -> Target:
        """Check ids and options before any network call. Raises :class:`UsageError`."""
        parse_app_id(self.app_id)
        validate_service_id(self.service_id)
        check_ids_are_paths(self.app_id, self.service_id)
        if self.data_handling not in DATA_HANDLING:
            raise UsageError(
                f"data handling must be 'wipe' or 'retain', not {self.data_handling!r}"
            )
        return self


@dataclass(frozen=True)
class StepEvent:
    """Progress of one step of one service. ``status``: start, done, skipped, warning, failed."""

    app_id: str
    service_id: str
    step: str
    status: str
    message: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Plan:
    """What is about to happen, shown before consent."""

    target: Target
    app: App
    binding: Binding
    registry_url: str
    registry_key_id: str
    signer_key_id: str
    endpoint_url: str
    held_receipt_id: str | None
    resume_phase: str


@dataclass
class Result:
    """The outcome of one service's decommission (the ``-o json`` object)."""

    app_id: str
    service_id: str
    status: str = "PENDING"
    receipt_id: str | None = None
    receipt: dict[str, Any] | None = None
    revocation_record: dict[str, Any] | None = None
    propagation: list[dict[str, Any]] = field(default_factory=list)
    data_handling: str = "wipe"
    already_revoked: bool = False
    resumed_from: str | None = None
    bundle: str | None = None
    dry_run: dict[str, Any] | None = None
    steps: list[dict[str, Any]] = field(default_factory=list)
    error: dict[str, Any] | None = None
    exit_code: int = 0
    #: revoked, but the re-read of the binding is left to the caller (Deps.defer_check)
    check_pending: bool = False
    #: the re-read is the only confirmation (a 409 without the signed record): if it cannot
    #: be done, the service is not reported REVOKED
    check_required: bool = False

    def to_json(self) -> dict[str, Any]:
        """The documented JSON shape (CLI.md: app_id, service_id, status, receipt_id,
        receipt, revocation_record, steps, plus details)."""
        out: dict[str, Any] = {
            "app_id": self.app_id,
            "service_id": self.service_id,
            "status": self.status,
            "receipt_id": self.receipt_id,
            "receipt": self.receipt,
            "revocation_record": self.revocation_record,
            "propagation": self.propagation,
            "data_handling": self.data_handling,
            "already_revoked": self.already_revoked,
            "resumed_from": self.resumed_from,
            "bundle": self.bundle,
            "steps": self.steps,
            "exit_code": self.exit_code,
        }
        if self.dry_run is not None:
            out["dry_run"] = self.dry_run
        if self.error is not None:
            out["error"] = self.error
        return out


def new_nonce() -> str:
    """128 random bits from the OS CSPRNG, URL-safe (22 chars; PROTOCOL.md section 1)."""
    return secrets.token_urlsafe(16)


def unix_now() -> int:
    """Integer Unix seconds."""
    return int(time.time())


@dataclass
class Deps:
    """Everything a decommission needs from outside: clients, key, storage, clock, UI hooks."""

    registry: RegistryClient
    provider: ProviderClient
    signer: Signer
    journals: JournalStore
    archive: Archive
    registry_url: str
    events: Callable[[StepEvent], None] = lambda event: None
    #: asked once the plan is known; None means consent was given up front, as ``consent``
    #: says (shown in the confirm step)
    confirm: Callable[[Plan], bool] | None = None
    consent: str = "--yes"
    clock: Callable[[], int] = unix_now
    nonce: Callable[[], str] = new_nonce
    endpoint_override: str | None = None
    dry_run: bool = False
    lock_wait: float = 120.0
    #: the binding as a listing just returned it (``--all``): saves one GET per service
    known_binding: Binding | None = None
    #: leave the final re-read to the caller (a batch re-reads all its services with one
    #: listing: :func:`omictl.workflow.batch.run_batch`); the result says it is pending
    defer_check: bool = False


class _Run:
    """One service's decommission: the steps, sharing the journal and the result."""

    def __init__(self, target: Target, deps: Deps) -> None:
        self.t = target
        self.d = deps
        self.result = Result(
            app_id=target.app_id,
            service_id=target.service_id,
            data_handling=target.data_handling,
        )
        self.journal = Journal(app_id=target.app_id, service_id=target.service_id)
        self.via_conflict = False  # the record came with a 409 already_revoked
        self.unconfirmed = False  # a 409 without a record: only the re-read can confirm
        self.listed_revoked = False  # the registry listed the binding REVOKED at resolve

    # ------------------------------------------------------------------ events
    def emit(self, step: str, status: str, message: str, /, **data: Any) -> None:
        record_step(self.result, self.d.events, step, status, message, **data)

    def try_save(self, phase: str, note: str = "", *, sync: bool = True) -> JournalError | None:
        """Append a journal record; the error if the journal cannot be written (disk
        full, permissions), for the caller to weigh against what the run has done."""
        try:
            self.d.journals.save(
                self.journal, phase=phase, now=self.d.clock(), note=note, sync=sync
            )
        except JournalError as exc:
            return exc
        return None

    def save(
        self, phase: str, note: str = "", *, sync: bool = True, failed_step: str | None = None
    ) -> None:
        """Append a journal record. A journal that cannot be written becomes the error that
        says what this run has done so far (:meth:`unrecorded`), reported as a failure of
        ``failed_step`` when given."""
        unsaved = self.try_save(phase, note, sync=sync)
        if unsaved is None:
            return
        error = self.unrecorded(phase, unsaved)
        if failed_step is not None:
            self.emit(failed_step, "failed", error.message)
        raise error from unsaved

    def save_done(self, step: str, note: str = "") -> None:
        """Record the end of the service's run. The work is done by then (revoked, the
        evidence written or not ours to write): a journal that cannot record it is a
        warning of ``step``, not a failure."""
        unsaved = self.try_save("done", note)
        if unsaved is not None:
            self.journal_warning(step, unsaved)

    def journal_warning(self, step: str, exc: JournalError) -> None:
        """The revocation stands, but the journal could not record the end of the run."""
        self.emit(
            step,
            "warning",
            f"the journal could not record the end of the run ({exc.message}); the "
            f"revocation stands: omictl decommission {self.t.app_id} {self.t.service_id} "
            "finishes the journal, sending at most an unbind the registry answers as "
            "already revoked",
        )

    def unrecorded(self, phase: str, exc: JournalError) -> OmictlError:
        """The error for a journal that could not record ``phase``: what this run (and the
        runs before it) had done decides which. Revoked, or terminated: exit 8. Nothing
        sent by this run: exit 2 (a local folder problem), the hint saying whether an
        earlier try or run had sent something."""
        t, j = self.t, self.journal
        folder = self.d.journals.path_for(t.app_id, t.service_id).parent
        free = f"free space or fix the permissions of {folder}"
        fix = f"{free}, then re-run the same command"
        details: dict[str, Any] = {"cause": exc.to_json(), "unrecorded": phase}
        receipt_id = self.held_receipt_id
        # `--all` lists ACTIVE bindings only: a revoked one is finished by naming it
        one = (
            f"{free}, then re-run omictl decommission {t.app_id} {t.service_id} (with the "
            "same options; --all lists only ACTIVE bindings)"
        )
        if j.revocation_record is not None or self.listed_revoked:
            if j.revocation_record is not None:  # "revoked": the registry has revoked it
                what = f"{t.service_id} is revoked (its record verified), but the journal "
                unrecorded = "it"
                rerun = "its record again and writes the evidence bundle"
            else:  # asking a REVOKED binding's registry for its record
                what = f"the registry lists {t.service_id} as REVOKED, but the journal "
                unrecorded = "the request for its signed record"
                rerun = "the record again"
            return PartiallyDone(
                f"{what}could not record {unrecorded}: {exc.message}",
                hint=f"{one}: it asks the registry for {rerun}; nothing is sent to the provider",
                details={**details, "receipt_id": receipt_id},
            )
        earlier = j.phase == phase or self.result.resumed_from not in (None, "new")
        if j.receipt is not None:  # "receipt_held" or "unbind_sent": the provider has wiped
            reused = j.phase != "termination_sent"  # the receipt reached the log before
            unbind = (
                "this try of the unbind request, which was not sent (an earlier one may have "
                "reached the registry)"
                if j.phase == "unbind_sent"
                else "the unbind request, so the unbind was not sent"
                if reused
                else "the receipt, so the unbind was not sent"
            )
            return PartiallyDone(
                f"the provider terminated {t.service_id} (receipt {receipt_id}), but the "
                f"journal could not record {unbind}: {exc.message}",
                hint=f"{fix}: "
                + (
                    "the held receipt is reused, no second DELETE is sent"
                    if reused
                    else "the DELETE is sent again and the provider answers it with the "
                    "same receipt"
                ),
                details={**details, "receipt_id": receipt_id},
            )
        what = "the DELETE" if phase == "termination_sent" else "the unbind request"
        sent = (
            f"this try sent nothing, but an earlier try or run had sent a request that may "
            f"have arrived (the journal is at {j.phase}): {fix} to resume"
            if earlier
            else f"nothing was sent: {fix}"
        )
        return JournalError(
            f"cannot record {what} before sending it: {exc.message}", hint=sent, details=details
        )

    @property
    def held_receipt_id(self) -> str | None:
        """The id of the verified receipt the journal holds, or None."""
        held = self.journal.receipt
        return held["data"].get("receipt_id") if held is not None else None

    # ------------------------------------------------------------------ steps
    def resolve_app(self) -> tuple[App, bytes]:
        """Registry key (pinned) and app record, and the master-key check: before the lock,
        so a mistyped AppID or a wrong key leaves nothing on disk."""
        t, d = self.t, self.d
        self.emit("resolve", "start", f"reading {t.app_id}/{t.service_id} from {d.registry_url}")
        registry_key = d.registry.registry_key()
        if d.registry.take_first_use_pin():
            from omictl.transport.pins import first_use_note

            self.emit("resolve", "warning", first_use_note(d.registry_url, registry_key))
        app = d.registry.get_app(t.app_id)
        if d.signer.public_key != app.master_public_key:
            raise VerificationError(
                f"key {d.signer.key_id} is not the master key of {t.app_id} "
                f"(the registry has {key_id(app.master_public_key)}); nothing was sent",
                code="wrong_master_key",
                hint="pass the app's master key with --key (omictl keys list shows key ids)",
            )
        return app, registry_key

    def resolve_binding(self, registry_key: bytes, *, use_known: bool) -> Binding:
        t, d = self.t, self.d
        known = d.known_binding if use_known else None
        if known is not None and (known.app_id, known.service_id) == (t.app_id, t.service_id):
            binding = known
        else:
            binding = d.registry.get_binding(t.app_id, t.service_id)
        self.emit(
            "resolve",
            "done",
            f"{binding.service_type or 'service'} {t.service_id} is {binding.status} at "
            f"{binding.endpoint_url}; master key {d.signer.key_id} matches; "
            f"registry key {key_id(registry_key)}",
            status=binding.status,
            endpoint_url=binding.endpoint_url,
            service_key_id=key_id(binding.public_key),
        )
        return binding

    def terminate(self, endpoint: str) -> Any:
        t, d = self.t, self.d
        self.emit("terminate", "start", f"DELETE {endpoint} ({self.journal.data_handling})")

        def sign() -> Envelope:
            # a fresh nonce and timestamp for every try (PROTOCOL.md section 1)
            env = sign_envelope(
                termination_request_data(
                    app_id=t.app_id,
                    service_id=t.service_id,
                    timestamp=d.clock(),
                    nonce=d.nonce(),
                    data_handling=self.journal.data_handling,
                ),
                d.signer,
            )
            self.journal.termination_request = env.to_json()
            self.save("termination_sent")  # before the bytes leave: a crash now resumes here
            return env

        try:
            answer = d.provider.terminate(endpoint, sign=sign)
        except OmictlError as exc:
            self.emit("terminate", "failed", exc.message)
            if (
                isinstance(exc, RemoteUnavailable)
                and self.journal.termination_request
                and not exc.details.get("never_sent")  # no try connected: nothing arrived
            ):
                # a timeout or a dropped connection says nothing about what the provider did
                exc.hint = (exc.hint + "; " if exc.hint else "") + (
                    "the DELETE may have reached the provider: re-run the same command to "
                    "resume (a repeated DELETE is answered with the original receipt)"
                )
            raise
        self.emit("terminate", "done", "provider answered")
        return answer

    def verify_receipt(self, answer: Any, binding: Binding) -> Receipt:
        t = self.t
        try:
            receipt = verify_receipt(
                answer,
                service_public_key=binding.public_key,
                app_id=t.app_id,
                service_id=t.service_id,
                data_handling=self.journal.data_handling,
            )
        except VerificationError as exc:
            # the verification failure stays the error, whatever the disk says
            try:
                path = self.keep_rejected(answer, exc.message)
                kept = f"the provider's answer is kept at {path}"
            except OmictlError as unkept:
                path, kept = None, f"the provider's answer could not be kept ({unkept.message})"
            self.journal.rejected_receipt = journaled_answer(answer, kept_at=path)
            self.journal.rejection_reason = exc.message[:2000]
            unsaved = self.try_save("receipt_rejected", exc.message)
            if unsaved is not None:
                kept += f"; the journal could not record it ({unsaved.message})"
            self.emit(
                "verify_receipt",
                "failed",
                exc.message,
                **({"kept_at": str(path)} if path is not None else {}),
            )
            raise VerificationError(
                exc.message, code=exc.code, hint=f"nothing was revoked; {kept}"
            ) from exc
        self.journal.receipt = receipt.envelope.to_json()
        self.journal.rejected_receipt = None
        self.journal.rejection_reason = None
        # durable with the unbind request's record, which is fdatasync-ed before the unbind
        # leaves (or at the end of the run, decommission()): one fdatasync for both
        self.save("receipt_held", sync=False, failed_step="verify_receipt")
        self.emit(
            "verify_receipt",
            "done",
            f"receipt {receipt.receipt_id} signed by service key {key_id(binding.public_key)}",
            receipt_id=receipt.receipt_id,
        )
        return receipt

    def unbind(self, registry_key: bytes) -> RevocationRecord | None:
        t, d = self.t, self.d
        from omictl.transport.registry import AlreadyRevoked, RecordRejected

        self.emit("unbind", "start", f"POST unbind to {d.registry_url}")

        def sign() -> Envelope:
            env = sign_envelope(
                unbind_request_data(
                    app_id=t.app_id,
                    service_id=t.service_id,
                    timestamp=d.clock(),
                    nonce=d.nonce(),
                    receipt=self.journal.receipt,
                ),
                d.signer,
            )
            self.journal.unbind_request = env.to_json()
            self.save("unbind_sent")
            return env

        try:
            record = d.registry.unbind(t.app_id, t.service_id, sign=sign)
        except AlreadyRevoked as exc:
            self.emit("unbind", "done", "registry says the binding was already revoked")
            self.via_conflict = True
            return exc.record
        except RecordRejected as exc:
            self.emit("unbind", "done", "registry answered the unbind request")
            raise self.record_rejected(exc) from exc
        except (RemoteUnavailable, RemoteRejected, ProtocolError) as exc:
            self.emit("unbind", "failed", exc.message)
            if self.journal.receipt is None:
                raise
            receipt_id = self.held_receipt_id
            raise PartiallyDone(
                f"the provider terminated {t.service_id} (receipt {receipt_id}) but the "
                f"registry did not revoke it yet: {exc.message}",
                hint="re-run the same command to resume: the held receipt is reused, "
                "no second DELETE is sent",
                details={"cause": exc.to_json(), "receipt_id": receipt_id},
            ) from exc
        except OmictlError as exc:  # a key mismatch, or a journal that cannot be written
            self.emit("unbind", "failed", exc.message)
            raise
        self.emit("unbind", "done", "registry accepted the unbind request")
        return record

    def keep_rejected(self, answer: Any, reason: str, *, source: str = "provider") -> Path:
        """Keep an answer that failed verification under ``receipts/rejected/``."""
        return self.d.archive.save_rejected(
            app_id=self.t.app_id,
            service_id=self.t.service_id,
            answer=answer,
            reason=reason,
            now=self.d.clock(),
            source=source,
        )

    def record_rejected(self, exc: VerificationError) -> VerificationError:
        """The registry's answer to our unbind held a record that does not verify: keep
        that answer for inspection and say what to do. The binding may be revoked; the
        journal stays at ``unbind_sent``, so a re-run asks the registry for its record again
        (its 409 ``already_revoked`` carries the stored one)."""
        kept = ""
        try:
            path = self.keep_rejected(getattr(exc, "answer", None), exc.message, source="registry")
            kept = f"the registry's answer is kept at {path}; "
            self.emit("verify_record", "failed", exc.message, kept_at=str(path))
        except OmictlError as unkept:
            self.emit("verify_record", "failed", f"{exc.message} (not kept: {unkept.message})")
        again = (
            "re-run the same command to ask the registry for its record again (the held "
            "receipt is reused, no second DELETE is sent)"
            if self.journal.receipt is not None
            else "re-run the same command to ask the registry for its record again"
        )
        return VerificationError(
            exc.message,
            code=exc.code,
            hint=f"{kept}report it to the registry operator; {again}",
        )

    def record_revoked(self, record: RevocationRecord | None, registry_key: bytes) -> bool:
        """Check and keep the record; True when it belongs in an evidence bundle."""
        if record is None:
            # PROTOCOL.md section 3: the 409 carries the stored record. Without one nothing
            # signed says the binding is revoked; the journal stays at unbind_sent (a re-run
            # asks again) and only the re-read of the binding can confirm it.
            self.emit(
                "verify_record",
                "warning",
                "registry reports the binding revoked but sent no signed record; "
                "re-reading the binding to confirm",
            )
            self.result.already_revoked = True
            self.unconfirmed = True
            return False
        sent = self.held_receipt_id
        ours = record.receipt_id == sent
        if not ours and self.journal.rejected_record is not None:
            # The registry answered our own unbind (200) with a record naming another
            # receipt, refused below. Whatever it presents now (a 409, the same record or
            # one signed again with new propagation), it cannot be another request's: the
            # binding was ours to revoke when it answered.
            raise VerificationError(
                f"the registry's revocation record names receipt {shown(record.receipt_id)}, "
                f"not the one our unbind carried ({shown(sent)}), as when omictl refused "
                "its answer before",
                code="invalid_record",
                hint="report this to the registry operator; the record was not accepted",
            )
        if not ours and self.via_conflict:
            # Revoked by another request (a colleague's --skip-provider, the registry's
            # console): CLI.md calls an already revoked binding a success. The record is
            # genuine (pinned key) but not ours, so no bundle pairs it with our receipt.
            self.result.already_revoked = True
            self.result.revocation_record = record.envelope.to_json()
            self.emit(
                "verify_record",
                "warning",
                f"the binding was already revoked by another request (its record names "
                f"receipt {shown(record.receipt_id)}); nothing more to do",
            )
            self.save_done("verify_record", note="revoked by another request")
            return False
        if not ours:
            # the evidence bundle must verify offline (core.evidence checks this very link);
            # kept, so that the same record coming back in a 409 is refused too
            self.journal.rejected_record = {  # a summary: the record itself may be large
                "receipt_id": record.receipt_id,
                "revoked_at": record.revoked_at,
                "signature": to_hex(record.envelope.signature),
            }
            hint = "report this to the registry operator; the record was not accepted"
            unsaved = self.try_save(
                "unbind_sent", "revocation record refused: it names another receipt"
            )
            if unsaved is not None:
                # Not done: the refusal must survive for a re-run to refuse this record in
                # a 409 too; without it, a re-run would take it for another request's.
                hint = (
                    f"careful: the journal could not record the refusal ({unsaved.message}), "
                    "so a re-run would accept this record as another request's: free space "
                    f"before re-running, and {hint}"
                )
            raise VerificationError(
                f"the registry's revocation record names receipt {shown(record.receipt_id)}, "
                f"but the unbind request carried {shown(sent)}",
                code="invalid_record",
                hint=hint,
            )
        self.journal.revocation_record = record.envelope.to_json()
        # durable with the "done" record after the bundle (or at the end of the run)
        self.save("revoked", sync=False, failed_step="verify_record")
        self.result.propagation = [p.to_json() for p in record.propagation]
        summary = ", ".join(f"{p.target} {p.status}" for p in record.propagation) or "none"
        self.emit(
            "verify_record",
            "done",
            f"revocation record signed by registry key {key_id(registry_key)}; purge: {summary}",
            revoked_at=record.revoked_at,
        )
        failed = [p.target for p in record.propagation if p.status != "delivered"]
        if failed:
            self.emit(
                "verify_record",
                "warning",
                f"purge not yet delivered to {', '.join(failed)} (the registry retries; "
                "the revocation stands)",
            )
        return True

    def keep_receipt(self) -> None:
        """Put the journal's evidence (receipt, revocation record) in the result: a failed
        run still names what it holds."""
        if self.journal.receipt is not None:
            self.result.receipt = self.journal.receipt
            self.result.receipt_id = self.held_receipt_id
        if self.journal.revocation_record is not None:
            self.result.revocation_record = self.journal.revocation_record

    def check_revoked(self) -> None:
        t, d = self.t, self.d
        if d.defer_check:
            self.result.check_pending = True
            self.result.check_required = self.unconfirmed
            return
        try:
            binding = d.registry.get_binding(t.app_id, t.service_id)
        except RemoteUnavailable as exc:
            if self.unconfirmed:
                message = f"could not re-read the binding: {exc.message}"
                self.emit("check_revoked", "failed", message)
                raise unconfirmed_revocation(t.service_id, self.held_receipt_id, exc) from exc
            self.emit("check_revoked", "warning", f"could not re-read the binding: {exc.message}")
            return
        except OmictlError as exc:  # as a batch records it (workflow.batch._judge)
            self.emit("check_revoked", "failed", exc.message)
            raise
        if binding.status != "REVOKED":
            error = still_listed(binding)
            self.emit("check_revoked", "failed", error.message)
            raise error
        if self.unconfirmed:  # the 409 without a record is confirmed now: done, no re-ask
            self.save_done(
                "check_revoked", note="already revoked; no signed record; the re-read confirmed it"
            )
        self.emit("check_revoked", "done", "binding is REVOKED (no longer discoverable)")

    def archive(self, app: App, binding: Binding, registry_key: bytes) -> None:
        d = self.d
        if self.journal.revocation_record is None or self.journal.unbind_request is None:
            self.emit("archive", "skipped", "no signed revocation record to archive")
            return
        bundle = build_bundle(
            app_id=self.t.app_id,
            service_id=self.t.service_id,
            created_at=d.clock(),
            registry_url=d.registry_url,
            master_public_key=app.master_public_key,
            service_public_key=binding.public_key,
            registry_public_key=registry_key,
            termination_request=self.journal.termination_request if self.journal.receipt else None,
            receipt=self.journal.receipt,
            unbind_request=self.journal.unbind_request,
            revocation_record=self.journal.revocation_record,
        )
        try:
            path = d.archive.save_bundle(bundle)
        except OmictlError as exc:  # disk full, permissions: the revocation stands
            self.emit("archive", "failed", exc.message)
            raise PartiallyDone(
                f"{self.t.service_id} is revoked (its record verified), but the evidence "
                f"bundle could not be written: {exc.message}",
                hint=f"free space or fix the permissions of {d.archive.root}, then re-run "
                f"omictl decommission {self.t.app_id} {self.t.service_id} (with the same "
                "options; --all lists only ACTIVE bindings): nothing is sent again, the bundle "
                "is written from the journal",
                details={
                    "cause": exc.to_json(),
                    "receipt_id": self.held_receipt_id,
                },
            ) from exc
        self.journal.bundle_path = str(path)
        self.save_done("archive")
        self.result.bundle = str(path)
        self.emit("archive", "done", f"evidence bundle {path}", bundle=str(path))

    # ------------------------------------------------------------------ the run
    def run(self, app: App, registry_key: bytes, *, use_known: bool = True) -> Result:
        t, d = self.t, self.d
        # dry runs read the journal too (never write it), to show what a real run would send
        self.journal = d.journals.load(t.app_id, t.service_id)
        j = self.journal
        # a listing's binding is fresh only for a service nobody has started on
        binding = self.resolve_binding(registry_key, use_known=use_known and j.phase == "new")
        if j.phase != "new":
            self.result.resumed_from = j.phase
        if binding.status == "REVOKED":
            return self.already_revoked(app, binding, registry_key)
        if j.phase in ("revoked", "done"):
            kept = (
                "holds a signed revocation of"
                if j.revocation_record is not None
                else "recorded the revocation of"  # a 409 without a record, another request's
            )
            raise VerificationError(
                f"this machine {kept} {t.service_id}, yet the registry lists it ACTIVE",
                hint="report this to the registry operator; if the registry was deliberately "
                f"reset, make sure no other omictl run is on this service, then move "
                f"{d.journals.path_for(t.app_id, t.service_id)} aside",
            )
        in_flight = j.phase in (
            "termination_sent",
            "receipt_held",
            "receipt_rejected",
            "unbind_sent",
        )
        if in_flight and j.data_handling != t.data_handling:
            raise UsageError(
                f"an interrupted run of {t.service_id} used --data-handling {j.data_handling}",
                hint="re-run with the same arguments to resume it",
            )
        j.data_handling = t.data_handling  # equal unless the journal is new
        j.skip_provider = t.skip_provider and j.receipt is None

        endpoint = d.endpoint_override or binding.endpoint_url
        held = self.held_receipt_id
        if not t.skip_provider and j.receipt is None:
            d.provider.announce(endpoint)  # --insecure's warning, before consent
        plan = Plan(
            target=t,
            app=app,
            binding=binding,
            registry_url=d.registry_url,
            registry_key_id=key_id(registry_key),
            signer_key_id=d.signer.key_id,
            endpoint_url=endpoint,
            held_receipt_id=held,
            resume_phase=j.phase,
        )
        if d.dry_run:
            return self.dry_run(plan)
        if d.confirm is not None:
            self.emit("confirm", "start", "waiting for confirmation")
            if not d.confirm(plan):
                self.emit("confirm", "failed", "declined")
                raise Aborted("declined at the confirmation prompt; nothing was sent")
            self.emit("confirm", "done", "confirmed")
        else:
            self.emit(
                "confirm",
                "skipped",
                f"consent given up front ({d.consent}); no prompt",
            )

        receipt: Receipt | None = None
        if j.receipt is not None:
            # resume: re-verify what we hold, never DELETE again
            receipt = verify_receipt(
                j.receipt,
                service_public_key=binding.public_key,
                app_id=t.app_id,
                service_id=t.service_id,
                data_handling=j.data_handling,
            )
            self.emit(
                "terminate",
                "skipped",
                f"resuming: receipt {receipt.receipt_id} already held, no DELETE sent",
            )
            self.emit(
                "verify_receipt",
                "done",
                f"held receipt {receipt.receipt_id} verifies",
                receipt_id=receipt.receipt_id,
            )
        elif j.skip_provider:
            self.emit(
                "terminate",
                "skipped",
                "--skip-provider: the provider is NOT asked to wipe or stop billing",
            )
            self.emit("verify_receipt", "skipped", "no receipt (--skip-provider)")
        else:
            answer = self.terminate(endpoint)
            receipt = self.verify_receipt(answer, binding)
        if receipt is not None:
            self.result.receipt_id = receipt.receipt_id
            self.result.receipt = j.receipt

        record = self.unbind(registry_key)
        if self.record_revoked(record, registry_key):
            self.archive(app, binding, registry_key)
        # kept even if the re-read fails; a record another request obtained (409) stays too
        self.result.revocation_record = j.revocation_record or self.result.revocation_record
        self.check_revoked()
        self.result.status = "REVOKED"
        return self.result

    def already_revoked(self, app: App, binding: Binding, registry_key: bytes) -> Result:
        t, j = self.t, self.journal
        self.result.already_revoked = True
        self.result.status = "REVOKED"
        self.keep_receipt()  # a receipt held from an earlier run is still reported
        if self.d.dry_run:  # a dry run sends and writes nothing, not even to recover evidence
            would = ""
            if j.revocation_record is None and j.phase == "unbind_sent":
                would = "; a real run would ask the registry again for its signed record"
            elif j.revocation_record is not None and j.phase != "done":
                would = "; a real run would write the evidence bundle"
            self.emit("check_revoked", "done", f"dry run: already REVOKED, nothing sent{would}")
            return self.result
        if j.revocation_record is None and j.phase == "unbind_sent":
            # Our own unbind landed but we died before recording the answer. Asking again
            # is harmless now (the registry answers already_revoked with the signed record)
            # and recovers the evidence.
            self.result.already_revoked = False
            self.listed_revoked = True
            record = self.unbind(registry_key)
            archivable = self.record_revoked(record, registry_key)
            if j.receipt is not None:
                self.result.receipt = j.receipt
                self.result.receipt_id = self.held_receipt_id
            if archivable:
                self.archive(app, binding, registry_key)
            self.result.revocation_record = j.revocation_record or self.result.revocation_record
            self.check_revoked()
            return self.result
        if j.revocation_record is not None:
            record = verify_revocation_record(
                j.revocation_record,
                registry_public_key=registry_key,
                app_id=t.app_id,
                service_id=t.service_id,
            )
            self.result.revocation_record = j.revocation_record
            self.result.receipt = j.receipt
            self.result.receipt_id = record.receipt_id
            self.result.propagation = [p.to_json() for p in record.propagation]
            if j.phase != "done":
                self.archive(app, binding, registry_key)
            else:
                self.result.bundle = j.bundle_path
            self.emit(
                "check_revoked",
                "done",
                "already REVOKED; the signed record is held locally; nothing sent",
            )
        else:
            self.emit(
                "check_revoked",
                "done",
                "the registry lists the binding as REVOKED; nothing sent "
                "(no signed record is held on this machine)",
            )
        return self.result

    def dry_run(self, plan: Plan) -> Result:
        t, d = self.t, self.d
        # Signed one day in the past: outside every receiver's 300 s window, so envelopes
        # printed into a CI log can never be replayed to wipe or revoke anything.
        now = d.clock() - DRY_RUN_BACKDATE_S
        termination = None
        if plan.held_receipt_id is None and not self.journal.skip_provider:
            termination = sign_envelope(
                termination_request_data(
                    app_id=t.app_id,
                    service_id=t.service_id,
                    timestamp=now,
                    nonce=d.nonce(),
                    data_handling=t.data_handling,
                ),
                d.signer,
            ).to_json()
        unbind = sign_envelope(
            unbind_request_data(
                app_id=t.app_id,
                service_id=t.service_id,
                timestamp=now,
                nonce=d.nonce(),
                receipt=self.journal.receipt,
            ),
            d.signer,
        ).to_json()
        self.result.status = "DRY_RUN"
        self.result.dry_run = {
            "endpoint_url": plan.endpoint_url,
            "registry_url": d.registry_url,
            "termination_request": termination,
            "unbind_request": unbind,
            "note": "nothing was sent; these envelopes are signed with a timestamp one day "
            "in the past so no receiver accepts them (replay-safe); a real run signs fresh "
            "ones, and its unbind request embeds the provider's receipt",
        }
        self.emit("confirm", "skipped", "dry run: nothing sent")
        return self.result


#: A rejected provider answer larger than this (encoded) is not copied into the journal,
#: which would otherwise grow by up to a 1 MiB answer per re-run; the archive keeps it whole.
MAX_JOURNALED_ANSWER = 64 * 1024


def journaled_answer(answer: Any, *, kept_at: Path | None) -> dict[str, Any]:
    """What the journal keeps of a provider answer that failed verification."""
    kept = answer if isinstance(answer, dict) else {"raw": answer}
    size = len(json_text(kept).encode("utf-8"))  # json_text: a lone surrogate is escaped
    if size <= MAX_JOURNALED_ANSWER:
        return kept
    return {
        "omitted": f"{size} bytes, over {MAX_JOURNALED_ANSWER}",
        "kept_at": str(kept_at) if kept_at is not None else None,
    }


def record_step(
    result: Result,
    events: Callable[[StepEvent], None],
    step: str,
    status: str,
    message: str,
    /,
    **data: Any,
) -> None:
    """Report a step: kept in ``result.steps`` (unless it is a start) and sent to
    ``events``."""
    if status != "start":
        result.steps.append(
            {"step": step, "status": status, "message": message, **({"data": data} if data else {})}
        )
    # progress only: a stderr whose reader has gone (a broken pipe) must not stop a step
    with contextlib.suppress(OSError):
        events(StepEvent(result.app_id, result.service_id, step, status, message, data))


def unconfirmed_revocation(
    service_id: str,
    receipt_id: str | None,
    cause: OmictlError,
    *,
    without_receipt: type[OmictlError] = RemoteUnavailable,
) -> OmictlError:
    """A 409 ``already_revoked`` came without the signed record and the re-read of the
    binding failed (or an interrupt skipped it): nothing confirms the revocation, so the
    service is not REVOKED. :class:`PartiallyDone` when a receipt is held, else
    ``without_receipt`` (exit 6, or :class:`~omictl.errors.Interrupted` for 130)."""
    what = (
        "the registry answered already_revoked without the signed record PROTOCOL.md "
        f"section 3 requires, and the binding could not be re-read: {cause.message}"
    )
    if receipt_id is not None:
        return PartiallyDone(
            f"the provider terminated {service_id} (receipt {receipt_id}), but {what}",
            hint="re-run the same command to confirm: the held receipt is reused, "
            "no second DELETE is sent",
            details={"cause": cause.to_json(), "receipt_id": receipt_id},
        )
    return without_receipt(
        f"{service_id}: {what}",
        hint="re-run the same command to confirm the revocation",
        details={"cause": cause.to_json()},
    )


def still_listed(binding: Binding) -> VerificationError:
    """The re-read after a verified revocation found the binding not REVOKED."""
    return VerificationError(
        f"the registry signed a revocation of {binding.service_id} but still lists it "
        f"{binding.status}",
        hint="report this to the registry operator; the evidence is archived",
    )


def decommission(target: Target, deps: Deps) -> Result:
    """Decommission one service, resuming from its journal; return the result.

    Raises an :class:`OmictlError` subclass on failure: :class:`VerificationError` (a key,
    receipt or record did not verify; nothing depending on it was done),
    :class:`PartiallyDone` (provider terminated, registry not yet), :class:`Aborted`,
    :class:`RemoteRejected`, :class:`RemoteUnavailable`, :class:`UsageError`. The error's
    ``details["result"]`` holds the partial :class:`Result` as JSON.
    """
    target.validate()
    run = _Run(target, deps)
    try:
        app, registry_key = run.resolve_app()
        if deps.dry_run:
            return run.run(app, registry_key)
        with deps.journals.locked(target.app_id, target.service_id, wait=deps.lock_wait) as waited:
            try:
                # after waiting for another run, the listing's binding may be stale: re-read it
                result = run.run(app, registry_key, use_known=not waited)
            except BaseException as exc:
                try:
                    deps.journals.flush(run.journal)
                except OmictlError as unsynced:  # the run's own error stays the error
                    if isinstance(exc, OmictlError):
                        exc.details["journal_not_synced"] = unsynced.message
                        exc.hint = (exc.hint + "; " if exc.hint else "") + (
                            f"careful: the journal's last record may not be on disk "
                            f"({unsynced.message})"
                        )
                raise
            try:
                deps.journals.flush(run.journal)  # no-op unless "done" could not be recorded
            except JournalError as exc:  # the revocation stands (checked or re-read)
                run.journal_warning("check_revoked", exc)
            return result
    except OmictlError as exc:
        run.result.status = (
            "PARTIAL"
            if isinstance(exc, PartiallyDone)
            else ("ABORTED" if isinstance(exc, Aborted) else "FAILED")
        )
        run.result.exit_code = int(exc.exit_code)
        run.result.error = exc.to_json()
        run.keep_receipt()
        exc.details.setdefault("result", run.result.to_json())
        raise
    except KeyboardInterrupt as exc:  # Ctrl-C or SIGTERM: the journal resumes it
        run.result.status = "ABORTED"
        run.result.exit_code = int(ExitCode.INTERRUPTED)
        run.result.error = Interrupted.of(exc).to_json()
        run.keep_receipt()
        if isinstance(exc, SignalInterrupt):
            exc.partial = run.result.to_json()
        raise
    except Exception as exc:  # a bug: a batch still reports what was done (receipt, bundle)
        run.result.status = "FAILED"
        run.result.exit_code = int(ExitCode.INTERNAL)
        run.keep_receipt()
        with contextlib.suppress(AttributeError, TypeError):
            exc.omictl_partial = run.result.to_json()  # type: ignore[attr-defined]
        raise
