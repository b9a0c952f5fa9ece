from rtavatar.cli import main

raise SystemExit(main())
