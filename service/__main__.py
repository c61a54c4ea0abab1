"""``python -m service --model-repository models --http-port 8000 ...`` (same flags as ``pixelserve serve``)."""

from service.cli import main

raise SystemExit(main())
