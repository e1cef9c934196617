"""Intake: a customer identifies (rate-limited, one generic failure) and consents."""

from __future__ import annotations

import logging

from banking.core import CoreBanking
from cases.consent import Consent
from cases.errors import IdentificationFailed, NotAllowed
from cases.limits import AttemptLimiter, client_key
from cases.services import check_service
from cases.states import CaseState
from cases.store import CaseRef, CaseStore, ConsentRecord

log = logging.getLogger(__name__)


class Intake:
    """Identification and consent, the steps before the queue."""

    def __init__(
        self,
        banking: CoreBanking,
        cases: CaseStore,
        limiter: AttemptLimiter,
    ) -> None:
        self._banking = banking
        self._cases = cases
        self._limiter = limiter

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
    ) -> CaseRef:
        """Open a case when the three facts identify one customer.

        Raises :class:`TooManyAttempts` once a client has failed too often in the window (even
        with correct data: the limit is on guessing), and :class:`IdentificationFailed` for any
        mismatch, without saying which field was wrong.
        """
        check_service(service)
        key = client_key("identify", address)
        await self._limiter.check(key)
        customer = await self._banking.identify(name, id_number, card_last4)
        if customer is None:
            await self._limiter.failed(key)
            log.info("identification failed", extra={"client": key[:12]})
            raise IdentificationFailed("identification failed")
        case = await self._cases.open(customer.id, service, lang, elderly)
        log.info("case opened", extra={"case_id": case.public_id, "service": service})
        return case

    async def consent(self, public_id: str, consent: Consent) -> CaseRef:
        """Record the customer's acceptance of ``consent`` on their case."""
        case = await self._cases.get(public_id)
        if case.state is not CaseState.IDENTIFIED:
            raise NotAllowed(f'consent is not asked in state "{case.state}"')
        record = ConsentRecord(version=consent.version, sha256=consent.sha256)
        return await self._cases.move(public_id, CaseState.CONSENTED, consent=record)
