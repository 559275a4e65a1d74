"""Map protocol library exceptions onto the base.py error classes."""

from __future__ import annotations

from pyghmi.exceptions import PyghmiException
from pyghmi.ipmi.private import constants as ipmi_constants

from drivers.bmc.base import BmcAuthError, BmcError, BmcRejected, BmcUnreachable

# Completion codes a BMC returns when it is temporarily unable to act (IPMI v2 table 5-2):
# 0xC0 node busy, 0xC3 timeout, 0xCE no response, 0xD2 cannot respond (initializing), 0xFF.
IPMI_TRANSIENT_CODES = frozenset({0xC0, 0xC3, 0xCE, 0xD2, 0xFF})

# pyghmi reports failures as text; these fragments identify a login refused for credentials.
_IPMI_AUTH_MARKERS = (
    "password",
    "unauthorized name",
    "rakp2",
    "rakp4",
    "privilege",
    "kg",
)
_IPMI_CODE_BY_TEXT: dict[str, int] = {
    str(text).lower(): code for code, text in ipmi_constants.ipmi_completion_codes.items()
}
_IPMI_TRANSPORT_MARKERS = ("timeout", "no longer connected", "session", "unable to transmit")


def classify_ipmi(exc: Exception, *, what: str, login: bool = False) -> BmcError:
    """Turn a pyghmi exception into a BmcError subclass."""
    if isinstance(exc, BmcError):
        return exc
    if not isinstance(exc, (PyghmiException, OSError)):
        # pyghmi fails with TypeError & co. when a session dies mid-call.
        return BmcUnreachable(f"{what}: session broke ({type(exc).__name__}: {exc})")
    text = str(exc)
    lowered = text.lower()
    if login and lowered in ("", "none", "session failed to initialize"):
        # pyghmi reports a login whose packets went unanswered with no message at all.
        return BmcUnreachable(f"{what}: login unanswered")
    code = getattr(exc, "ipmicode", 0) or _IPMI_CODE_BY_TEXT.get(lowered, 0)
    if any(marker in lowered for marker in _IPMI_AUTH_MARKERS):
        return BmcAuthError(f"{what}: IPMI login refused: {text}")
    if code == 0xFFFF or any(marker in lowered for marker in _IPMI_TRANSPORT_MARKERS):
        return BmcUnreachable(f"{what}: {text or 'no answer'}")
    if code in IPMI_TRANSIENT_CODES or code == 0:
        return BmcRejected(f"{what}: BMC answered {text} (code 0x{code:02x})")
    # Other completion codes (invalid data, insufficient privilege...) repeat on retry.
    return BmcRejected(f"{what}: BMC answered {text} (code 0x{code:02x})", retryable=False)
