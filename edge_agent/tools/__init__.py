"""Product tooling that is not the daemon: synthesized voices and rooms for
evaluations, the held-out wake-word evaluation and the wake-word trainer
(``python -m edge_agent.tools.train_wake``). Nothing here is imported
at run time; it needs the synthesizers the evaluation uses (Piper from the
runtime dependencies; espeak-ng, flite and festival from Debian)."""
