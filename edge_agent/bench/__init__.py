"""The benchmarks `edge-agent bench` runs (edge_agent.benchmark), one module a
benchmark: ``run(quick) -> dict`` gives its figures, ``main()`` runs it alone
(``python -m edge_agent.bench.<name> [--quick]``). They drive the real daemon
and engines in edge_agent.testbed's world, so they need no source checkout;
the daemon never imports them."""
