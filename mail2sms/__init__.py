"""mail2sms: an SMTP server that sends email as SMS through SMS providers' HTTP APIs and mails back the outcome."""

__version__ = "0.1.0"
