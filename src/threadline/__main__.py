"""``python -m threadline``: what the kernelspec launches."""

from threadline.app import main

raise SystemExit(main())
