"""Moving game roots between peers: planning (pure), serving and fetching."""
