from connectors.conformance.command import main

raise SystemExit(main())
