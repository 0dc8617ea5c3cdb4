"""`python -m bench [--quick] [--json PATH]`: the load benchmark (see bench/README.md)."""

from bench.run import main

raise SystemExit(main())
