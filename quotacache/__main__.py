from quotacache.cli import main

raise SystemExit(main())
