"""End-to-end tests (a package, so their module names never collide with the unit tests')."""
