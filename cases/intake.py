"""Intake: a customer identifies (rate-limited, one generic failure) and consents."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from banking.core import CoreBanking
from banking.identity import normalise_id_number
from cases.consent import Consent
from cases.errors import IdentificationFailed, NotAllowed
from cases.limits import AttemptLimiter, Limit
from cases.services import check_service
from cases.states import CaseState
from cases.store import CaseRef, CaseStore, ConsentRecord

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class IntakeLimits:
    """How often identification may fail, per client address and per ID number typed, and
    how many cases one customer may open."""

    per_address: int = 5
    per_id_number: int = 10
    window_seconds: int = 900
    cases_per_customer_hour: int = 6


@dataclass(frozen=True, slots=True)
class Opened:
    """A new case, and the customer's earlier cases it superseded (public ids)."""

    case: CaseRef
    superseded: tuple[str, ...] = ()


class Intake:
    """Identification and consent, the steps before the queue."""

    def __init__(
        self,
        banking: CoreBanking,
        cases: CaseStore,
        limiter: AttemptLimiter,
        limits: IntakeLimits | None = None,
    ) -> None:
        self._banking = banking
        self._cases = cases
        self._limiter = limiter
        self._limits = limits or IntakeLimits()

    async def identify(
        self,
        address: str,
        service: str,
        name: str,
        id_number: str,
        card_last4: str,
        *,
        lang: str,
        elderly: bool,
    ) -> Opened:
        """Open a case when the three facts identify one customer (their earlier cases not yet
        in a call are abandoned with it: ``Opened.superseded``).

        Raises :class:`TooManyAttempts` once the client's address, or the ID number typed (from
        any address), has failed too often in the window — even with correct data: the limit is
        on guessing — or once the customer has opened too many cases in the hour; and
        :class:`IdentificationFailed` for any mismatch, without saying which field was wrong.
        """
        check_service(service)
        lim = self._limits
        window = lim.window_seconds
        ticket = await self._limiter.begin(
            [
                Limit("identify-address", address, lim.per_address, window),
                # As the bank compares it: spaces or full-width digits do not make another key.
                Limit(
                    "identify-id-number", normalise_id_number(id_number), lim.per_id_number, window
                ),
            ]
        )
        customer = await self._banking.identify(name, id_number, card_last4)
        if customer is None:
            log.info("identification failed")
            raise IdentificationFailed("identification failed")
        await self._limiter.succeeded(ticket)
        per_hour = Limit("cases-per-customer", str(customer.id), lim.cases_per_customer_hour, 3600)
        await self._limiter.take([per_hour])
        case, superseded = await self._cases.open_alone(customer.id, service, lang, elderly)
        log.info("case opened", extra={"case_id": case.public_id, "service": service})
        return Opened(case, superseded)

    async def consent(self, public_id: str, consent: Consent) -> CaseRef:
        """Record the customer's acceptance of ``consent`` on their case."""
        case = await self._cases.get(public_id)
        if case.state is not CaseState.IDENTIFIED:
            raise NotAllowed(f'consent is not asked in state "{case.state}"')
        record = ConsentRecord(version=consent.version, sha256=consent.sha256)
        return await self._cases.move(public_id, CaseState.CONSENTED, consent=record)
