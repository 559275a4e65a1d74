"""Code shared by every process: settings, workflow contracts and the node facts schema."""
