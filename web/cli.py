"""The ``cloudbranch`` command: serve, migrate, seed demo data, add customers and staff, sign
and verify the audit log, export and check case bundles, run retention.

Each command reads ``Settings.from_env()`` and runs in its own ``asyncio.run``, except
``audit verify-bundle``, which reads neither settings nor database: it runs offline on any
machine. Expected failures (bad input, duplicates, unreadable files) print one line to stderr
and exit with status 2; ``audit verify`` and ``audit verify-bundle`` exit with status 1 when
what they check is broken; ``audit verify-bundle`` without ``--public-key`` exits with status 3
when the bundle is only self-consistent (any key could have signed it).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import logging
import os
import sys
import unicodedata
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.exc import DBAPIError

from banking.core import CoreBanking, NewCustomer, StoredTemplate
from banking.demo import DemoSummary, Enroller, seed_demo
from banking.errors import BankingError, InvalidCustomerData
from banking.sql import SqlCoreBanking
from cases.bundle import BundleInfo, BundleReport, export_case, verify_bundle
from cases.errors import CaseError
from cases.recordings import RecordingCheck
from cases.retention import RetentionReport, run_retention
from store.blobs import BlobStore
from store.chain import Broken
from store.checkpoints import VerifyReport, verify_log, write_checkpoint
from store.db import Database, integrity_problems, open_database
from store.errors import StoreError
from store.s3 import open_blob_store
from store.signing import (
    find_signing_key,
    key_id,
    parse_public_key,
    public_key_b64,
    signing_key,
)
from verification.config import build_engine
from verification.engine import FaceEngine
from verification.errors import VerificationError
from web.accounts import ROLES, AccountError, change_staff, create_staff
from web.settings import Settings, SettingsError

log = logging.getLogger(__name__)

PASSWORD_ENV = "CLOUDBRANCH_NEW_STAFF_PASSWORD"
EXIT_BROKEN = 1
EXIT_USAGE = 2
EXIT_UNPINNED = 3  # verify-bundle without --public-key: self-consistent, signer not checked
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class CliError(Exception):
    """A command cannot run as asked; the message is shown to the user."""


@asynccontextmanager
async def _services(
    settings: Settings,
) -> AsyncIterator[tuple[Database, BlobStore, CoreBanking]]:
    """The migrated database, the blob store and the core-banking adapter, closed on exit."""
    async with open_blob_store(settings.store) as blobs:
        db = await open_database(settings.store)
        try:
            yield db, blobs, SqlCoreBanking(db, blobs, settings.web.secret_key)
        finally:
            await db.close()


def _width(text: str) -> int:
    """Terminal columns taken by ``text`` (CJK characters take two)."""
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Rows as left-aligned columns under a header line."""
    widths = [max(_width(r[i]) for r in [headers, *rows]) for i in range(len(headers))]
    lines = [
        "  ".join(cell + " " * (w - _width(cell)) for cell, w in zip(row, widths, strict=True))
        for row in [headers, ["-" * w for w in widths], *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def _print_demo(summary: DemoSummary) -> None:
    staff_rows = [[s.username, summary.password, s.role, s.display_name] for s in summary.staff]
    print("Demo staff logins:")
    print(format_table(["username", "password", "role", "name"], staff_rows))
    customer_rows = [
        [c.name, c.id_number, c.card_last4, c.phone, c.birth_date, c.ukey_serial, c.status, c.note]
        for c in summary.customers
    ]
    print("\nDemo customers (type these to identify):")
    headers = ["name", "ID number", "card last4", "phone", "birth date", "U-key", "status", "note"]
    print(format_table(headers, customer_rows))
    print(f"\nEvery demo card's current PIN is {summary.pin} (demo data only).")
    print("One-time codes of a phone change appear at /admin/outbox (log in as admin).")


async def _migrate(settings: Settings) -> None:
    db = await open_database(settings.store)
    await db.close()


def _enroller(settings: Settings) -> Enroller:
    """Templates from reference photos with the configured engine (built once, on first use)."""
    engines: list[FaceEngine] = []
    cfg = settings.verification

    def enrol_sync(photo: bytes) -> StoredTemplate:
        if not engines:
            engines.append(build_engine(cfg.backend, cfg.models_dir))
        try:
            template = engines[0].enrol(photo)
        except VerificationError as err:
            raise InvalidCustomerData("photo", f"cannot serve as a reference: {err}") from err
        return StoredTemplate(template.model_key, template.to_bytes(), template.crop_jpeg)

    async def enrol(photo: bytes) -> StoredTemplate:
        return await asyncio.to_thread(enrol_sync, photo)

    return enrol


async def _seed_demo(settings: Settings) -> DemoSummary:
    async with _services(settings) as (db, blobs, banking):
        return await seed_demo(
            db,
            blobs,
            banking,
            settings.shared_data,
            create_staff=create_staff,
            enrol=_enroller(settings),
        )


def _photo_content_type(photo: bytes) -> str:
    """Sniff JPEG or PNG from the first bytes; the adapter decodes it fully later."""
    if photo.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if photo.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    raise CliError("invalid photo: not a JPEG or PNG file")


def _read_photo(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as err:
        raise CliError(f"invalid photo: cannot read {path}: {err.strerror}") from err


async def _add_customer(settings: Settings, args: argparse.Namespace) -> None:
    photo = await asyncio.to_thread(_read_photo, Path(args.photo))
    new = NewCustomer(
        name=args.name,
        id_number=args.id_number,
        card_number=args.card_number,
        photo=photo,
        photo_content_type=_photo_content_type(photo),
        birth_date=args.birth_date,
        phone=args.phone,
    )
    template = await _enroller(settings)(photo)
    async with _services(settings) as (_db, _blobs, banking):
        ref = await banking.add_customer(new, [template])
    print(
        format_table(["id", "name", "ID number"], [[str(ref.id), ref.name, ref.id_number_masked]])
    )


def _new_staff_password() -> str:
    password = os.environ.get(PASSWORD_ENV)
    if password:
        return password
    password = getpass.getpass("New password: ")
    if getpass.getpass("Repeat password: ") != password:
        raise CliError("the two passwords differ")
    return password


async def _add_staff(settings: Settings, args: argparse.Namespace, password: str) -> None:
    async with _services(settings) as (db, _blobs, _banking):
        ref = await create_staff(db, args.username, args.display_name, password, args.role)
    rows = [[str(ref.id), ref.username, ref.role, ref.display_name]]
    print(format_table(["id", "username", "role", "name"], rows))


async def _change_staff(settings: Settings, args: argparse.Namespace) -> None:
    active = {"deactivate": False, "activate": True}.get(args.action)
    async with _services(settings) as (db, _blobs, _banking):
        ref = await change_staff(db, args.username, active=active, role=getattr(args, "role", None))
    state = {True: "active", False: "deactivated", None: "unchanged"}[active]
    print(
        format_table(
            ["id", "username", "role", "state"], [[str(ref.id), ref.username, ref.role, state]]
        )
    )


async def _audit_checkpoint(settings: Settings) -> dict[str, object]:
    key = await asyncio.to_thread(signing_key, settings.audit)
    db = await open_database(settings.store)
    try:
        cp = await write_checkpoint(db, key)
    finally:
        await db.close()
    if cp is None:
        raise CliError("the audit log is empty: there is nothing to sign")
    public = key.public_key()
    return {
        "seq": cp.seq,
        "hash": cp.hash,
        "at": cp.at.isoformat(),
        "key_id": key_id(public),
        "public_key": public_key_b64(public),
    }


async def _audit_verify(settings: Settings, public_key: str | None) -> VerifyReport:
    if public_key is not None:
        public = parse_public_key(public_key)
    else:
        key = await asyncio.to_thread(find_signing_key, settings.audit)
        if key is None:
            raise CliError(
                "no audit key to check checkpoints with: set CLOUDBRANCH_AUDIT_SIGNING_KEY "
                "or pass --public-key"
            )
        public = key.public_key()
    try:
        async with _services(settings) as (db, blobs, _banking):
            # The file first: a damaged page may hold what no query below reads.
            problems = await integrity_problems(db)
            if problems:
                return _damaged("integrity check failed: " + "; ".join(problems))
            # Every stored recording must still hash to what its event says, unless tombstoned.
            return await verify_log(db, public, [RecordingCheck(db, blobs)])
    except DBAPIError as err:  # too damaged to open or migrate
        return _damaged(f"integrity check failed: the database cannot be read: {err.orig}")


def _damaged(reason: str) -> VerifyReport:
    return VerifyReport(0, 0, Broken(0, "database_integrity", reason))


async def _audit_export(settings: Settings, public_id: str, out: Path) -> BundleInfo:
    key = await asyncio.to_thread(signing_key, settings.audit)
    async with _services(settings) as (db, blobs, _banking):
        try:
            return await export_case(db, blobs, key, public_id, None, out)
        except OSError as err:
            raise CliError(f"cannot write {out}: {err.strerror or err}") from err


def _verify_bundle(path: Path, public_key: str | None) -> BundleReport:
    expected = None if public_key is None else parse_public_key(public_key)
    return verify_bundle(path, expected)


def _parse_now(text: str | None) -> datetime:
    if text is None:
        return datetime.now(UTC)
    try:
        at = datetime.fromisoformat(text)
    except ValueError as err:
        raise CliError(f"--now is not an ISO 8601 time: {text!r}") from err
    return at if at.tzinfo else at.replace(tzinfo=UTC)


async def _retention_run(settings: Settings, now: datetime, dry_run: bool) -> RetentionReport:
    async with _services(settings) as (db, blobs, _banking):
        keep = settings.audit.retention_days
        return await run_retention(db, blobs, keep, now, dry_run=dry_run)


def _cmd_serve(settings: Settings, _args: argparse.Namespace) -> None:
    # Imported here: the web app pulls in aiohttp, aiortc and the face backends.
    from web.app import serve

    serve(settings)


def _cmd_migrate(settings: Settings, _args: argparse.Namespace) -> None:
    asyncio.run(_migrate(settings))
    print("database migrated to the latest schema")


def _cmd_seed_demo(settings: Settings, _args: argparse.Namespace) -> None:
    _print_demo(asyncio.run(_seed_demo(settings)))


def _cmd_customers_add(settings: Settings, args: argparse.Namespace) -> None:
    asyncio.run(_add_customer(settings, args))


def _cmd_staff_add(settings: Settings, args: argparse.Namespace) -> None:
    password = _new_staff_password()
    asyncio.run(_add_staff(settings, args, password))


def _cmd_staff_change(settings: Settings, args: argparse.Namespace) -> None:
    asyncio.run(_change_staff(settings, args))


def _cmd_audit_checkpoint(settings: Settings, _args: argparse.Namespace) -> None:
    print(json.dumps(asyncio.run(_audit_checkpoint(settings))))


def _cmd_audit_verify(settings: Settings, args: argparse.Namespace) -> int:
    report = asyncio.run(_audit_verify(settings, args.public_key))
    print(json.dumps(report.to_json(), ensure_ascii=False))
    return 0 if report.ok else EXIT_BROKEN


def _cmd_audit_export(settings: Settings, args: argparse.Namespace) -> None:
    info = asyncio.run(_audit_export(settings, args.case, Path(args.out)))
    print(json.dumps(info.to_json(), ensure_ascii=False))


def _cmd_audit_verify_bundle(args: argparse.Namespace) -> int:
    """Offline: no settings, no database. Without ``--public-key`` a bundle signed by any key
    is self-consistent at best: that is said, and the exit status is not 0."""
    report = _verify_bundle(Path(args.bundle), args.public_key)
    print(json.dumps(report.to_json(), ensure_ascii=False))
    if not report.ok:
        return EXIT_BROKEN
    if not report.pinned:
        print(
            "checked only that the bundle is self-consistent: anyone can sign a bundle with a "
            "key of their own; pass --public-key with the bank's audit key to trust it",
            file=sys.stderr,
        )
        return EXIT_UNPINNED
    return 0


def _cmd_retention_run(settings: Settings, args: argparse.Namespace) -> None:
    report = asyncio.run(_retention_run(settings, _parse_now(args.now), args.dry_run))
    print(json.dumps(report.to_json()))


def _add_bundle(audit_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    export = audit_sub.add_parser(
        "export", help="write a case's signed bundle (zip) for auditors; prints JSON"
    )
    export.add_argument("--case", required=True, help="the case's public id")
    export.add_argument("--out", required=True, help="the zip file to write")
    export.set_defaults(run=_cmd_audit_export)
    check = audit_sub.add_parser(
        "verify-bundle",
        help="check a case bundle offline (no database); prints JSON, exits 1 when not ok",
    )
    check.add_argument("bundle", help="the bundle's zip file")
    check.add_argument(
        "--public-key",
        help="base64 Ed25519 public key the bundle must be signed with (without it the check "
        f"is of self-consistency only and exits {EXIT_UNPINNED})",
    )
    check.set_defaults(run_offline=_cmd_audit_verify_bundle)


def _add_retention(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    retention = sub.add_parser("retention", help="delete recordings and evidence of old cases")
    retention_sub = retention.add_subparsers(dest="action", required=True, metavar="ACTION")
    run = retention_sub.add_parser(
        "run",
        help="delete what cases closed more than CLOUDBRANCH_RETENTION_DAYS ago hold; prints JSON",
    )
    run.add_argument("--dry-run", action="store_true", help="report what would go, change nothing")
    run.add_argument("--now", help="ISO 8601 time to count from (default: now; naive = UTC)")
    run.set_defaults(run=_cmd_retention_run)


def _add_audit(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    audit = sub.add_parser("audit", help="sign and verify the hash-chained audit log")
    audit_sub = audit.add_subparsers(dest="action", required=True, metavar="ACTION")
    checkpoint = audit_sub.add_parser("checkpoint", help="sign the log's head (prints JSON)")
    checkpoint.set_defaults(run=_cmd_audit_checkpoint)
    verify = audit_sub.add_parser(
        "verify",
        help="recompute the chain, check every checkpoint; prints JSON, exits 1 when broken",
    )
    verify.add_argument(
        "--public-key", help="base64 Ed25519 public key (default: the configured key's)"
    )
    verify.set_defaults(run=_cmd_audit_verify)
    _add_bundle(audit_sub)


def _add_subcommands(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("serve", help="run the web server").set_defaults(run=_cmd_serve)
    sub.add_parser("migrate", help="migrate the database").set_defaults(run=_cmd_migrate)
    seed = sub.add_parser("seed-demo", help="create demo staff and customers (idempotent)")
    seed.set_defaults(run=_cmd_seed_demo)

    customers = sub.add_parser("customers", help="manage customers")
    customers_sub = customers.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = customers_sub.add_parser("add", help="open a customer with a card and a photo")
    add.add_argument("--name", required=True)
    add.add_argument("--id-number", required=True, help="18-character PRC resident ID number")
    add.add_argument("--card-number", required=True)
    add.add_argument("--photo", required=True, help="reference photo (JPEG or PNG)")
    add.add_argument("--birth-date", help="YYYY-MM-DD (default: from the ID number)")
    add.add_argument("--phone")
    add.set_defaults(run=_cmd_customers_add)

    staff = sub.add_parser("staff", help="manage staff accounts")
    staff_sub = staff.add_subparsers(dest="action", required=True, metavar="ACTION")
    add_staff = staff_sub.add_parser("add", help=f"add a staff account (password: ${PASSWORD_ENV})")
    add_staff.add_argument("--username", required=True)
    add_staff.add_argument("--role", required=True, choices=ROLES)
    add_staff.add_argument("--display-name", required=True)
    add_staff.set_defaults(run=_cmd_staff_add)
    for action, text in (
        ("deactivate", "stop an account: its sessions and open consoles end"),
        ("activate", "let a deactivated account sign in again"),
    ):
        change = staff_sub.add_parser(action, help=text)
        change.add_argument("username")
        change.set_defaults(run=_cmd_staff_change)
    set_role = staff_sub.add_parser("set-role", help="give an account another role")
    set_role.add_argument("username")
    set_role.add_argument("role", choices=ROLES)
    set_role.set_defaults(run=_cmd_staff_change)
    _add_audit(sub)
    _add_retention(sub)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``cloudbranch`` command."""
    parser = argparse.ArgumentParser(prog="cloudbranch", description=__doc__.splitlines()[0])
    _add_subcommands(parser)
    return parser


def _run_offline(args: argparse.Namespace) -> int:
    """A command that needs no settings (they may not exist on this machine)."""
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    try:
        status: int = args.run_offline(args)
    except (CliError, StoreError) as err:
        print(f"cloudbranch: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return status


def main(argv: list[str] | None = None) -> int:
    """Run the command in ``argv`` (default: ``sys.argv[1:]``) and return the exit status."""
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # argparse has printed usage or help
        return exit_.code if isinstance(exit_.code, int) else EXIT_USAGE
    if hasattr(args, "run_offline"):
        return _run_offline(args)
    try:
        settings = Settings.from_env()
        logging.basicConfig(level=settings.log_level.upper(), format=LOG_FORMAT)
    except ValueError as err:  # SettingsError, a bad database URL or log level
        print(f"cloudbranch: configuration error: {err}", file=sys.stderr)
        return EXIT_USAGE
    try:
        status = args.run(settings, args)
    except (CliError, BankingError, AccountError, CaseError, StoreError, SettingsError) as err:
        log.debug("command failed", exc_info=True)
        print(f"cloudbranch: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    return status if isinstance(status, int) else 0
