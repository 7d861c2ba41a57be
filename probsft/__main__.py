from probsft.cli import main

raise SystemExit(main())
