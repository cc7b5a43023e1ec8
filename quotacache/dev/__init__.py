"""Development tooling: the embedded broker, the upstream simulator, the demo, child processes."""
