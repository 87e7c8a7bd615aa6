"""One exception tree for mail2sms.

    Mail2SmsError
    ├── ConfigError            a configuration file or value is wrong (message names the key path)
    ├── ContentError           a mail cannot be turned into SMS (554 5.6.0; message names the line, key or row)
    │   └── NumberError        a value is not a usable phone number (550 5.1.1 at RCPT, 554 5.6.0 in a body)
    ├── LimitError             too big / too many recipients or rows (552 5.3.4)
    ├── LoopError              too many Received: headers (554 5.4.6)
    │   └── AutoReplyError     an automatic reply (Auto-Submitted: auto-replied, vacation markers) (550 5.7.1)
    ├── PolicyError            a route's number rules or quota refuse the mail (550 5.7.1; 450 4.7.1 if temporary)
    ├── SpoolError             the spool could not store or read (451 4.3.0; never shown to the client)
    │   └── SpoolFullError     the spool has no room (452 4.3.1)
    ├── ProviderError          an adapter could not make sense of a provider's reply (mapped to a Result)
    └── RequestNotSent         the "request is leaving" hook refused or failed: no byte of the request left

Messages of ContentError, NumberError, LimitError and PolicyError are written for the sender and go into SMTP
replies and outcome mail, so they must never carry secrets. Every other error's text stays in logs (redacted) and the
client sees only the generic reply from `smtp.replies`.
"""

from __future__ import annotations


class Mail2SmsError(Exception):
    """Base of every error mail2sms raises on purpose."""


class ConfigError(Mail2SmsError):
    """A configuration problem; `problems` holds one "key.path: what is wrong" line each."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class ContentError(Mail2SmsError):
    """The mail's content cannot be turned into SMS. The message is shown to the sender."""


class NumberError(ContentError):
    """A value is not a usable phone number. The message says which value and why."""


class LimitError(Mail2SmsError):
    """A size or count limit was exceeded. The message is shown to the sender."""


class LoopError(Mail2SmsError):
    """The mail has passed through too many hops: a mail loop."""


class AutoReplyError(LoopError):
    """The mail is an automatic reply (parse.autoreply); the message names the marker, e.g. "Auto-Submitted:
    auto-replied". A LoopError, so a caller that knows only loops still refuses it."""


class PolicyError(Mail2SmsError):
    """A route's number policy or quota refuses the mail. The message is shown to the sender.

    `temporary`: waiting helps (an hourly quota); `quota`: a quota, not a number rule, refused it.
    """

    def __init__(self, message: str, *, temporary: bool = False, quota: bool = False) -> None:
        super().__init__(message)
        self.temporary = temporary
        self.quota = quota


class SpoolError(Mail2SmsError):
    """The spool failed to store or read; the client gets a temporary failure."""


class SpoolFullError(SpoolError):
    """The spool's storage is full."""


class ProviderError(Mail2SmsError):
    """A provider's reply made no sense to its adapter."""


class RequestNotSent(Mail2SmsError):
    """A provider request stopped before its first byte: the hook that runs right before it (`providers.http`)
    failed or refused (the spool could not mark the jobs `sending`, the lease was lost, the dispatcher is stopping
    or the provider was paused). `__cause__` says why. Nothing reached the provider, so this is never "may have
    been sent": the jobs go back to `queued`, or stay with the process that now holds them."""
