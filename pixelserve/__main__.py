from pixelserve.cli import main

raise SystemExit(main())
