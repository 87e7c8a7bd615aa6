"""`python -m mail2sms` runs the command line."""

from mail2sms.cli import main

raise SystemExit(main())
