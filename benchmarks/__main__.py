"""``python -m benchmarks``: see README.md in this directory."""

from benchmarks.run import main

raise SystemExit(main())
