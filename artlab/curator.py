"""The curator's password (ARTLAB_CURATOR_PASSWORD): compared in constant time, throttled per client.

Curator actions (making a model active for everyone) are refused when no password is set: a kiosk
must never be open by default.
"""

import hmac
import logging
import math
import threading
import time

from artlab import paths

log = logging.getLogger(__name__)


def curator_ok(password: str | None) -> bool:
    """The curator's password (from ARTLAB_CURATOR_PASSWORD), compared in constant time.

    With no password configured, curator actions are refused: a kiosk must never be open by default.
    """
    expected = paths.setting("CURATOR_PASSWORD", "")
    if not expected or not password:
        return False
    return hmac.compare_digest(password.encode("utf-8"), expected.encode("utf-8"))


class CuratorGate:
    """The curator password, throttled per client (an IP address): each wrong password in a row
    doubles the wait before the answer and before the next try (BASE_DELAY_S, 2x, 4x, ...); after
    MAX_FAILURES wrong ones in a row the client is locked out for LOCKOUT_S. A right password clears
    the count. Every wrong try is logged. Answers are delayed rather than only refused, so a client
    trying one password after another simply waits; tries sent in parallel are refused unread.
    """

    MAX_FAILURES = 5
    BASE_DELAY_S = 0.25
    LOCKOUT_S = 15 * 60

    def __init__(self, clock=time.monotonic, sleep=time.sleep):
        self._clock, self._sleep = clock, sleep
        self._failures: dict[str, int] = {}        # client -> wrong passwords in a row
        self._blocked_until: dict[str, float] = {}
        self._lock = threading.Lock()

    def wait_s(self, client: str) -> float:
        """Seconds before `client` may try again (0: now)."""
        with self._lock:
            return max(0.0, self._blocked_until.get(client, 0.0) - self._clock())

    def check(self, password: str | None, client: str) -> str | None:
        """None when `password` is the curator's; else why not, as one line for the visitor."""
        wait = self.wait_s(client)
        if wait > 0:
            log.warning("curator password: try from %s refused unread (%.0f s left to wait)", client, wait)
            return f"too many wrong passwords from your address: try again in {math.ceil(wait)} s"
        if curator_ok(password):
            with self._lock:
                self._failures.pop(client, None)
            return None
        if not password or not paths.setting("CURATOR_PASSWORD"):
            return "wrong or missing password"        # no guess was made: nothing to count
        backoff = self._failed(client)
        if backoff:
            self._sleep(backoff)
        return "wrong or missing password"

    def _failed(self, client: str) -> float:
        """Count a wrong password; return the back-off to wait before answering."""
        with self._lock:
            count = self._failures[client] = self._failures.get(client, 0) + 1
            delay = self.LOCKOUT_S if count >= self.MAX_FAILURES else self.BASE_DELAY_S * 2 ** (count - 1)
            self._blocked_until[client] = self._clock() + delay
        if count >= self.MAX_FAILURES:
            log.warning("curator password: %d wrong in a row from %s; locked out for %d s",
                        count, client, self.LOCKOUT_S)
            return 0.0                                  # the lockout is told at once, not slept through
        log.warning("curator password: wrong password from %s (%d in a row)", client, count)
        return delay
