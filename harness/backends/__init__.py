"""Where peers run: Docker containers (the real lab) or local subprocesses (no engine needed)."""
