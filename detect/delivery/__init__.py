"""Alert delivery: signed webhooks (generic JSON, Slack, PagerDuty Events v2) from a persistent
outbox with retries. See docs/readme/alerting.md.

    from detect.delivery import attach
    dispatcher = attach(engine.store, config)   # in the process that owns the AlertStore
    ...
    dispatcher.close()
"""

from detect.delivery.dispatcher import Dispatcher, attach
from detect.delivery.outbox import OutboxBusyError, append_request, owner_running
from detect.delivery.signing import new_secret, sign_headers, verify

__all__ = ["Dispatcher", "OutboxBusyError", "append_request", "attach", "new_secret", "owner_running", "sign_headers",
           "verify"]
