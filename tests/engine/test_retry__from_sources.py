"""Hand-off for test_retry.py of tests/engine (``_engine/retry.py``), through the scripted driver
(tests/engine/scripted.py): a Retry-After date counts from the injected clock. From test_engine_rules.py (the
sources helper, issue 27)."""

from __future__ import annotations

import email.utils

from .scripted import APP_SERVICE, Clock, Script, engine, error_response, token_response
from .sources.support import RESOURCE


def test_a_retry_after_date_is_counted_from_the_injected_clock() -> None:
    clock = Clock()
    later = email.utils.formatdate(clock.now + 5, usegmt=True)
    script = Script(clock).queue(error_response(503, {"retry-after": later}), token_response("t"))

    script.run(engine(APP_SERVICE, clock).acquire(RESOURCE))

    assert script.sleeps == [5.0]
