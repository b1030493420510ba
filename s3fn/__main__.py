"""`python -m s3fn` runs the `s3fn` command."""

from s3fn.cli import main

raise SystemExit(main())
