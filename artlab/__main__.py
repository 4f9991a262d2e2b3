from artlab.cli import main

raise SystemExit(main())
