from fceval_tui.cli import main

raise SystemExit(main())
