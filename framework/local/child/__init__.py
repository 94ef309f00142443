"""The processes the activator starts: the model host (fork server) and its workers."""
