"""What `mail2sms check-config --verbose` says about each configured provider: how it tells delivery and whether
SMS replies come back by mail (issue 17), read from the built adapters (`receipts`, `replies`), so the EAPI and
the JSON API of BulkSMS are told apart.

Pure: it reads adapters and the config, makes no request, and must never print or return a secret (only names,
types and key paths).
"""

from __future__ import annotations

from mail2sms.config import Config
from mail2sms.providers.receipts import push_receiver, receipt_source
from mail2sms.providers.registry import spec_for
from mail2sms.providers.replies import reply_push_receiver, reply_source

NO_REPLIES = "no replies API: SMS replies are not mailed back"


def _ways(poll: bool, push: bool) -> str:
    return " and ".join(w for w, on in (("polling", poll), ("push", push)) if on)


def provider_facts(config: Config, providers: dict[str, object]) -> list[str]:
    """One line per provider, sorted by name: `providers.NAME (Label): receipts …; replies …`."""
    lines = []
    for name in sorted(providers):
        adapter = providers[name]
        pconf = config.providers[name]
        spec = spec_for(pconf.type)
        label = spec.label if spec is not None else pconf.type
        poll, push = receipt_source(adapter) is not None, push_receiver(adapter) is not None
        receipts = f"delivery receipts by {_ways(poll, push)}" if poll or push else "no delivery receipts"
        r_poll, r_push = reply_source(adapter) is not None, reply_push_receiver(adapter) is not None
        if not (r_poll or r_push):
            replies = NO_REPLIES
        elif not config.replies.enabled:
            replies = "has a replies API, but replies.enabled = false: SMS replies are not mailed back"
        elif not pconf.replies:
            replies = f"has a replies API, but providers.{name}.replies = false: SMS replies are not mailed back"
        else:
            replies = f"SMS replies by {_ways(r_poll, r_push)}, mailed back to the sender"
        lines.append(f"providers.{name} ({label}): {receipts}; {replies}")
    return lines
