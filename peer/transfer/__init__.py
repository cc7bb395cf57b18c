"""Moving game roots between peers: planning (pure), serving, downloads and streamed installs."""
