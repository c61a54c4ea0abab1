"""``python -m pixelserve.service --model-repository models ...`` (the same flags as ``pixelserve serve``)."""

from .process.cli import main

raise SystemExit(main())
